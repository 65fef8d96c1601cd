//! Outside subscribers validate log messages against `schemas/json/log-message.schema.json`,
//! which describes every version that may be in the log ([`PublishedMessage`]).
//! This test fails when the Rust types and the committed schema drift apart; run it with
//! `HERALD_UPDATE_SCHEMAS=1` to regenerate the file after an intended change.

use herald_schemas::log_message::PublishedMessage;
use std::path::PathBuf;

#[test]
fn committed_json_schema_matches_the_rust_types() {
    let schema = schemars::schema_for!(PublishedMessage);
    let generated = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json/log-message.schema.json");
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

/// What receivers of Herald's own `herald.…` events get as `type` and `data`:
/// `schemas/json/operational-events.schema.json`, kept in step the same way.
#[test]
fn committed_operational_events_schema_matches_the_rust_types() {
    let schema = schemars::schema_for!(herald_schemas::OperationalEvent);
    let generated = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json/operational-events.schema.json");
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
