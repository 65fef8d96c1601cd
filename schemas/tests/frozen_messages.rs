//! A published message version keeps decoding. `fixtures/` holds one message of every type as
//! Herald wrote it when that version was published; the files are frozen: never edit one,
//! add a file for each new version. Each must still decode with [`LogMessage::decode`], keep
//! its identifying fields, and — while its type is still the one Herald writes — encode back
//! to the same JSON.

use herald_schemas::LogMessage;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture, as (file name, raw bytes), sorted by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .expect("schemas/tests/fixtures exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .map(|path| (file_name(&path), std::fs::read(&path).expect("readable")))
        .collect();
    found.sort();
    found
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// The fields that identify a message, as JSON pointers into the envelope and the values
/// the decoded message holds for them.
fn key_fields(message: &LogMessage) -> Vec<(&'static str, Value)> {
    fn text(value: impl ToString) -> Value {
        Value::String(value.to_string())
    }
    match message {
        LogMessage::EventAccepted(event) => vec![
            ("/data/event_id", text(event.event_id)),
            ("/data/tenant_id", text(event.tenant_id)),
            ("/data/event_type", text(&event.event_type)),
            (
                "/data/payload",
                serde_json::from_str(event.payload.get()).expect("payload is JSON"),
            ),
            ("/data/endpoint_ids/0", text(event.endpoint_ids[0])),
        ],
        LogMessage::AttemptRecorded(attempt) => vec![
            ("/data/attempt_id", text(attempt.attempt_id)),
            ("/data/event_id", text(attempt.event_id)),
            ("/data/endpoint_id", text(attempt.endpoint_id)),
            ("/data/tenant_id", text(attempt.tenant_id)),
            ("/data/attempt_number", attempt.attempt_number.into()),
            ("/data/outcome", text(attempt.outcome.as_str())),
            ("/data/http_status", attempt.http_status.into()),
        ],
        LogMessage::DeliveryDeferred(deferred) => vec![
            ("/data/event_id", text(deferred.event_id)),
            ("/data/endpoint_id", text(deferred.endpoint_id)),
            ("/data/attempt_number", deferred.attempt_number.into()),
            ("/data/reason", text(deferred.reason.as_str())),
        ],
        LogMessage::RetryDue(retry) => vec![
            ("/data/event_id", text(retry.event_id)),
            ("/data/endpoint_id", text(retry.endpoint_id)),
            ("/data/event_sequence", retry.event_sequence.into()),
            ("/data/attempt_number", retry.attempt_number.into()),
        ],
        LogMessage::TenantCreated(tenant) => vec![
            ("/data/tenant_id", text(tenant.tenant_id)),
            ("/data/name", text(&tenant.name)),
        ],
        LogMessage::TenantUpdated(tenant) => vec![
            ("/data/tenant_id", text(tenant.tenant_id)),
            ("/data/suspended", tenant.suspended.into()),
            ("/data/actor/kind", text("operator")),
        ],
        LogMessage::ApiKeyCreated(key) => vec![
            ("/data/key_id", text(key.key_id)),
            ("/data/tenant_id", text(key.tenant_id)),
            ("/data/scopes/0", text(key.scopes[0].as_str())),
        ],
        LogMessage::ApiKeyRevoked(key) => vec![
            ("/data/key_id", text(key.key_id)),
            ("/data/tenant_id", text(key.tenant_id)),
        ],
        LogMessage::EndpointUpdated(updated) => vec![
            (
                "/data/endpoint/endpoint_id",
                text(updated.endpoint.endpoint_id),
            ),
            ("/data/endpoint/url", text(&updated.endpoint.url)),
            ("/data/changed/0", text(&updated.changed[0])),
        ],
        LogMessage::EndpointDeleted(deleted) => vec![
            ("/data/endpoint_id", text(deleted.endpoint_id)),
            ("/data/tenant_id", text(deleted.tenant_id)),
        ],
        LogMessage::EndpointCreated(created) => vec![
            (
                "/data/endpoint/endpoint_id",
                text(created.endpoint.endpoint_id),
            ),
            ("/data/endpoint/tenant_id", text(created.endpoint.tenant_id)),
            ("/data/endpoint/url", text(&created.endpoint.url)),
            ("/data/endpoint/enabled", created.endpoint.enabled.into()),
            ("/data/endpoint/ordered", created.endpoint.ordered.into()),
        ],
        LogMessage::EndpointSecretRotated(rotated) => vec![
            ("/data/endpoint_id", text(rotated.endpoint_id)),
            ("/data/tenant_id", text(rotated.tenant_id)),
        ],
        LogMessage::EndpointDisabled(disabled) => vec![
            ("/data/endpoint_id", text(disabled.endpoint_id)),
            ("/data/reason", text(&disabled.reason)),
        ],
        LogMessage::EndpointCircuitOpened(opened) => vec![
            ("/data/endpoint_id", text(opened.endpoint_id)),
            (
                "/data/consecutive_failures",
                opened.consecutive_failures.into(),
            ),
        ],
        LogMessage::EndpointCircuitClosed(closed) => vec![
            ("/data/endpoint_id", text(closed.endpoint_id)),
            ("/data/tenant_id", text(closed.tenant_id)),
        ],
        LogMessage::EndpointSloBurning(burning) => vec![
            ("/data/endpoint_id", text(burning.endpoint_id)),
            ("/data/tenant_id", text(burning.tenant_id)),
            ("/data/alert", text(burning.alert.as_str())),
            (
                "/data/objective/success_rate",
                burning.objective.success_rate.into(),
            ),
        ],
        LogMessage::ReplayRequested(replay) => vec![
            ("/data/event_id", text(replay.event_id)),
            ("/data/event_sequence", replay.event_sequence.into()),
            (
                "/data/deliveries/0/endpoint_id",
                text(replay.deliveries[0].endpoint_id),
            ),
            (
                "/data/deliveries/0/attempt_number",
                replay.deliveries[0].attempt_number.into(),
            ),
        ],
        LogMessage::ReplayStarted(started) => vec![
            ("/data/replay_id", text(started.replay_id)),
            ("/data/tenant_id", text(started.tenant_id)),
            ("/data/mode", started.mode.as_str().into()),
            ("/data/events_per_second", started.events_per_second.into()),
        ],
        LogMessage::ReplayProgressed(progressed) => vec![
            ("/data/replay_id", text(progressed.replay_id)),
            ("/data/through_sequence", progressed.through_sequence.into()),
            ("/data/events_replayed", progressed.events_replayed.into()),
            (
                "/data/deliveries_scheduled",
                progressed.deliveries_scheduled.into(),
            ),
        ],
        LogMessage::ReplayFinished(finished) => vec![
            ("/data/replay_id", text(finished.replay_id)),
            ("/data/through_sequence", finished.through_sequence.into()),
            ("/data/events_replayed", finished.events_replayed.into()),
            (
                "/data/deliveries_scheduled",
                finished.deliveries_scheduled.into(),
            ),
        ],
    }
}

#[test]
fn every_message_type_has_a_frozen_sample() {
    let names: Vec<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    for type_name in LogMessage::TYPE_NAMES {
        let expected = format!("{type_name}.json");
        assert!(
            names.contains(&expected),
            "no frozen sample of `{type_name}`: add schemas/tests/fixtures/{expected}, a message \
             as this version writes it"
        );
    }
}

#[test]
fn frozen_samples_still_decode_and_keep_their_fields() {
    for (name, bytes) in fixtures() {
        let type_name = name.trim_end_matches(".json");
        let fixture: Value = serde_json::from_slice(&bytes).expect("fixture is JSON");
        assert_eq!(
            fixture["type"], type_name,
            "{name}: file named after its type"
        );
        let message = LogMessage::decode(&bytes)
            .unwrap_or_else(|error| panic!("{name} no longer decodes: {error}"));
        for (pointer, decoded) in key_fields(&message) {
            assert_eq!(
                fixture.pointer(pointer),
                Some(&decoded),
                "{name}: {pointer} changed meaning"
            );
        }
        if message.type_name() == type_name {
            let encoded: Value =
                serde_json::from_slice(&message.encode()).expect("encoding is JSON");
            assert_eq!(
                encoded, fixture,
                "{name}: `{type_name}` is published, so it must be written exactly as before"
            );
        } else {
            // Only an old version that decoding upcasts to its successor may come out as
            // another type; a type this build still writes must decode as itself.
            assert!(
                !LogMessage::TYPE_NAMES.contains(&type_name),
                "{name} decoded as `{}`",
                message.type_name()
            );
        }
    }
}
