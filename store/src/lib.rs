//! Postgres tables that more than one Herald service reads or writes. Each table has one
//! module here that holds every statement on it (typed rows in, typed rows out), so a column
//! change is made in one place and the services only call functions. A table that one service
//! alone uses stays with that service; a join used for a single read stays with its reader and
//! is listed in the owning module's documentation (ADR 0011).
//!
//! This crate does no caching and knows no HTTP or log types: callers decide what a missing
//! row means, and pass a pool or their own transaction.

pub mod config_changes;
pub mod endpoints;
pub mod portal_sessions;
pub mod secrets_vault;
