//! Outside subscribers validate log messages against `schemas/json/log-message.schema.json`,
//! which describes every version that may be in the log ([`PublishedMessage`]), and the
//! `data` of Herald's own `herald.…` events against `schemas/json/operational-events.schema.json`.
//! These tests fail when the Rust types and the committed schemas drift apart; run them with
//! `HERALD_UPDATE_SCHEMAS=1` to regenerate the files after an intended change.

use herald_schemas::log_message::PublishedMessage;
use std::path::PathBuf;

/// Compares `schema` with the committed `schemas/json/<file>` (rewriting it first when asked).
fn matches_committed(schema: schemars::Schema, file: &str) {
    let generated = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(file);
    if std::env::var_os("HERALD_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; regenerate with HERALD_UPDATE_SCHEMAS=1 cargo test -p herald-schemas",
        path.display()
    );
}

#[test]
fn committed_json_schema_matches_the_rust_types() {
    matches_committed(
        schemars::schema_for!(PublishedMessage),
        "log-message.schema.json",
    );
}

/// What receivers of Herald's own `herald.…` events get as `type` and `data`.
#[test]
fn committed_operational_events_schema_matches_the_rust_types() {
    matches_committed(
        schemars::schema_for!(herald_schemas::OperationalEvent),
        "operational-events.schema.json",
    );
}
