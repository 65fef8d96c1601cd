//! The one envelope every log message travels in: `{"type": "<name>.v<N>", "data": {…}}`.
//!
//! Decoding reads the type name first and then parses `data` straight into the matching
//! struct. That keeps raw payloads (`RawValue`) intact, and it is where an old variant would
//! be upcast to the current one.

use crate::config_changes::{
    Actor, ApiKeyCreated, ApiKeyRevoked, EndpointDeleted, EndpointUpdated, TenantUpdated,
};
use crate::messages::{
    AttemptRecorded, DeliveryDeferred, EndpointCircuitClosed, EndpointCircuitOpened,
    EndpointCreated, EndpointDisabled, EndpointSecretRotated, EventAccepted, RetryDue,
    TenantCreated,
};
use crate::objectives::EndpointSloBurning;
use crate::replays::{ReplayFinished, ReplayProgressed, ReplayRequested, ReplayStarted};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Declares [`LogMessage`] from one table of `Variant(Payload) = "type.name.vN"` rows: the
/// enum with its serde names, [`LogMessage::type_name`] and the decoder's dispatch all come
/// from the same row, so a type name is written exactly once. A published row is never
/// edited; a new shape is a new row. `= "x.v2" | XV1 = "x.v1"` writes `x.v2` and upcasts
/// `x.v1` (whose payload must decode into the new shape, its added fields defaulted); `XV1`
/// names the older version in [`PublishedMessage`].
macro_rules! log_messages {
    ($($(#[$attribute:meta])* $variant:ident($payload:ty) = $type_name:literal $(| $older_variant:ident = $older:literal)*,)+) => {
        /// Every message that may be in the log: what Herald writes ([`LogMessage`]) and the
        /// older versions it wrote before, which stay in the log and still decode. The JSON
        /// Schema for outside subscribers is generated from it.
        #[derive(JsonSchema)]
        #[schemars(rename = "LogMessage")]
        #[serde(tag = "type", content = "data")]
        pub enum PublishedMessage {
            $(
                $(#[$attribute])*
                #[serde(rename = $type_name)]
                $variant($payload),
                $(
                    /// An older version, still read (upcast on decode).
                    #[serde(rename = $older)]
                    $older_variant($payload),
                )*
            )+
        }

        /// Every message Herald appends to its log.
        #[derive(Clone, Debug, Serialize, JsonSchema)]
        #[serde(tag = "type", content = "data")]
        pub enum LogMessage {
            $(
                $(#[$attribute])*
                #[serde(rename = $type_name)]
                $variant($payload),
            )+
        }

        impl LogMessage {
            /// Every versioned type name this build reads and writes.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($type_name),+];

            /// Older versions this build still reads (upcast on decode) but no longer writes.
            pub const OLDER_TYPE_NAMES: &'static [&'static str] = &[$($($older,)*)+];

            /// The versioned type name, as found in the envelope's `type` field.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $type_name,)+
                }
            }

            /// Parses `body` as the payload of the message named `type_name`; `None` when
            /// no message has that name.
            fn decode_body(
                type_name: &str,
                body: &str,
            ) -> Option<Result<Self, serde_json::Error>> {
                match type_name {
                    $($type_name $(| $older)* => Some(serde_json::from_str(body).map(Self::$variant)),)+
                    _ => None,
                }
            }
        }
    };
}

log_messages! {
    EventAccepted(EventAccepted) = "event.accepted.v1",
    AttemptRecorded(AttemptRecorded) = "attempt.recorded.v2" | AttemptRecordedV1 = "attempt.recorded.v1",
    DeliveryDeferred(DeliveryDeferred) = "delivery.deferred.v1",
    RetryDue(RetryDue) = "retry.due.v1",
    TenantCreated(TenantCreated) = "tenant.created.v2" | TenantCreatedV1 = "tenant.created.v1",
    TenantUpdated(TenantUpdated) = "tenant.updated.v1",
    ApiKeyCreated(ApiKeyCreated) = "api_key.created.v1",
    ApiKeyRevoked(ApiKeyRevoked) = "api_key.revoked.v1",
    EndpointCreated(EndpointCreated) = "endpoint.created.v3"
        | EndpointCreatedV2 = "endpoint.created.v2" | EndpointCreatedV1 = "endpoint.created.v1",
    EndpointUpdated(EndpointUpdated) = "endpoint.updated.v2" | EndpointUpdatedV1 = "endpoint.updated.v1",
    EndpointDeleted(EndpointDeleted) = "endpoint.deleted.v1",
    EndpointSecretRotated(EndpointSecretRotated) = "endpoint.secret_rotated.v2"
        | EndpointSecretRotatedV1 = "endpoint.secret_rotated.v1",
    EndpointDisabled(EndpointDisabled) = "endpoint.disabled.v2" | EndpointDisabledV1 = "endpoint.disabled.v1",
    EndpointCircuitOpened(EndpointCircuitOpened) = "endpoint.circuit_opened.v1",
    EndpointCircuitClosed(EndpointCircuitClosed) = "endpoint.circuit_closed.v1",
    EndpointSloBurning(EndpointSloBurning) = "endpoint.slo_burning.v1",
    ReplayRequested(ReplayRequested) = "delivery.replay_requested.v1",
    ReplayStarted(ReplayStarted) = "replay.started.v1",
    ReplayProgressed(ReplayProgressed) = "replay.progressed.v1",
    ReplayFinished(ReplayFinished) = "replay.finished.v1",
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not a log envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("message `{kind}` has an invalid body: {source}")]
    Body {
        kind: String,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl LogMessage {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: no maps with non-string keys, no custom
        // serializers that error.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: RawEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let parsed = Self::decode_body(envelope.kind, envelope.data.get())
            .ok_or_else(|| DecodeError::UnknownType(envelope.kind.to_owned()))?;
        parsed.map_err(|source| DecodeError::Body {
            kind: envelope.kind.to_owned(),
            source,
        })
    }
}

impl LogMessage {
    /// The endpoint whose configuration this message changes, with its tenant. Circuit
    /// breaker changes are health, not configuration, and are not included.
    pub fn changed_endpoint(&self) -> Option<(crate::TenantId, crate::EndpointId)> {
        match self {
            Self::EndpointCreated(created) => {
                Some((created.endpoint.tenant_id, created.endpoint.endpoint_id))
            }
            Self::EndpointUpdated(updated) => {
                Some((updated.endpoint.tenant_id, updated.endpoint.endpoint_id))
            }
            Self::EndpointDeleted(deleted) => Some((deleted.tenant_id, deleted.endpoint_id)),
            Self::EndpointSecretRotated(rotated) => Some((rotated.tenant_id, rotated.endpoint_id)),
            Self::EndpointDisabled(disabled) => Some((disabled.tenant_id, disabled.endpoint_id)),
            _ => None,
        }
    }

    /// The tenant whose credentials this message changes: a revoked key, or a tenant
    /// suspended, resumed or given another limit. Authentication caches drop the tenant's
    /// entries on it.
    pub fn changed_credentials(&self) -> Option<crate::TenantId> {
        match self {
            Self::ApiKeyRevoked(revoked) => Some(revoked.tenant_id),
            Self::TenantUpdated(updated) => Some(updated.tenant_id),
            _ => None,
        }
    }

    /// The tenant a configuration change is about and who made it; `None` for messages
    /// that are not configuration changes.
    pub fn configuration(&self) -> Option<(crate::TenantId, Actor)> {
        match self {
            Self::TenantCreated(message) => Some((message.tenant_id, message.actor)),
            Self::TenantUpdated(message) => Some((message.tenant_id, message.actor)),
            Self::ApiKeyCreated(message) => Some((message.tenant_id, message.actor)),
            Self::ApiKeyRevoked(message) => Some((message.tenant_id, message.actor)),
            Self::EndpointCreated(message) => Some((message.endpoint.tenant_id, message.actor)),
            Self::EndpointUpdated(message) => Some((message.endpoint.tenant_id, message.actor)),
            Self::EndpointDeleted(message) => Some((message.tenant_id, message.actor)),
            Self::EndpointSecretRotated(message) => Some((message.tenant_id, message.actor)),
            Self::EndpointDisabled(message) => Some((message.tenant_id, message.actor)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{EndpointId, EventId, TenantId};
    use chrono::Utc;

    fn accepted(payload: &str) -> LogMessage {
        LogMessage::EventAccepted(EventAccepted {
            event_id: EventId::generate(),
            tenant_id: TenantId::generate(),
            event_type: "invoice.paid".into(),
            payload: RawValue::from_string(payload.to_owned()).expect("valid json"),
            idempotency_key: None,
            accepted_at: Utc::now(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            endpoint_ids: vec![EndpointId::generate()],
            target_endpoints: None,
            deliver_after: None,
            expires_at: None,
        })
    }

    #[test]
    fn event_payload_survives_a_round_trip_byte_for_byte() {
        let payload = r#"{"amount": 1200,  "currency":"EUR", "nested": {"z":1,"a":[1,2]}}"#;
        let bytes = accepted(payload).encode();
        match LogMessage::decode(&bytes).expect("decodes") {
            LogMessage::EventAccepted(event) => assert_eq!(event.payload.get(), payload),
            other => panic!("decoded as {}", other.type_name()),
        }
    }

    #[test]
    fn envelope_names_the_versioned_type() {
        let message = accepted("{}");
        let value: serde_json::Value = serde_json::from_slice(&message.encode()).expect("json");
        assert_eq!(value["type"], "event.accepted.v1");
        assert_eq!(value["type"], message.type_name());
        assert!(value["data"]["event_id"].is_string());
    }

    #[test]
    fn every_type_name_is_known_to_the_decoder() {
        assert_eq!(LogMessage::TYPE_NAMES.len(), 20);
        for &type_name in LogMessage::TYPE_NAMES {
            let envelope = format!(r#"{{"type":"{type_name}","data":{{}}}}"#);
            // An empty body is invalid for every message: the error names the variant tried.
            let error = LogMessage::decode(envelope.as_bytes()).expect_err("empty body");
            assert!(
                matches!(&error, DecodeError::Body { kind, .. } if kind == type_name),
                "{type_name}: {error}"
            );
        }
    }

    #[test]
    fn unknown_types_are_reported_not_guessed() {
        let error = LogMessage::decode(br#"{"type":"event.accepted.v9","data":{}}"#)
            .expect_err("must not decode");
        assert!(matches!(error, DecodeError::UnknownType(kind) if kind == "event.accepted.v9"));
    }
}
