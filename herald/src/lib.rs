//! The `herald` binary's library: configuration, connections, migrations and the runner that
//! starts any service alone or all of them in one process.

pub mod api_docs;
pub mod app;
pub mod config;
pub mod health;
pub mod migrate;
pub mod openapi;
pub mod rebuild;
pub mod receiver_contract;
pub mod reconcile;
pub mod secrets_admin;
pub mod stack;
pub mod telemetry;

pub use app::{run, Service};
pub use config::HeraldConfig;
