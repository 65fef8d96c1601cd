//! End-to-end tests: the real `herald all` against the real NATS, Postgres and ClickHouse of
//! the local stack (`make test` starts it) and real HTTP receivers on loopback.

mod bad_input;
mod breaker;
mod config_log;
mod delivery_path;
mod endpoint_management;
mod idempotency;
mod isolation;
mod keys_and_tenants;
mod listing;
mod metrics;
mod objectives;
mod operational_events;
mod ordering;
mod read_side;
mod receiver_answers;
mod retries;
mod routing;
mod usage;
