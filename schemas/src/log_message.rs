//! The one envelope every log message travels in: `{"type": "<name>.v<N>", "data": {…}}`.
//!
//! Decoding reads the type name first and then parses `data` straight into the matching
//! struct. That keeps raw payloads (`RawValue`) intact, and it is where an old variant would
//! be upcast to the current one.

use crate::messages::{
    AttemptRecorded, DeliveryDeferred, EndpointCircuitClosed, EndpointCircuitOpened,
    EndpointCreated, EndpointDisabled, EndpointSecretRotated, EventAccepted, ReplayRequested,
    RetryDue, TenantCreated,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Every message Herald appends to its log.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum LogMessage {
    #[serde(rename = "event.accepted.v1")]
    EventAccepted(EventAccepted),
    #[serde(rename = "attempt.recorded.v1")]
    AttemptRecorded(AttemptRecorded),
    #[serde(rename = "delivery.deferred.v1")]
    DeliveryDeferred(DeliveryDeferred),
    #[serde(rename = "retry.due.v1")]
    RetryDue(RetryDue),
    #[serde(rename = "tenant.created.v1")]
    TenantCreated(TenantCreated),
    #[serde(rename = "endpoint.created.v1")]
    EndpointCreated(EndpointCreated),
    #[serde(rename = "endpoint.secret_rotated.v1")]
    EndpointSecretRotated(EndpointSecretRotated),
    #[serde(rename = "endpoint.disabled.v1")]
    EndpointDisabled(EndpointDisabled),
    #[serde(rename = "endpoint.circuit_opened.v1")]
    EndpointCircuitOpened(EndpointCircuitOpened),
    #[serde(rename = "endpoint.circuit_closed.v1")]
    EndpointCircuitClosed(EndpointCircuitClosed),
    #[serde(rename = "delivery.replay_requested.v1")]
    ReplayRequested(ReplayRequested),
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
    /// The versioned type name, as found in the envelope's `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::EventAccepted(_) => "event.accepted.v1",
            Self::AttemptRecorded(_) => "attempt.recorded.v1",
            Self::DeliveryDeferred(_) => "delivery.deferred.v1",
            Self::RetryDue(_) => "retry.due.v1",
            Self::TenantCreated(_) => "tenant.created.v1",
            Self::EndpointCreated(_) => "endpoint.created.v1",
            Self::EndpointSecretRotated(_) => "endpoint.secret_rotated.v1",
            Self::EndpointDisabled(_) => "endpoint.disabled.v1",
            Self::EndpointCircuitOpened(_) => "endpoint.circuit_opened.v1",
            Self::EndpointCircuitClosed(_) => "endpoint.circuit_closed.v1",
            Self::ReplayRequested(_) => "delivery.replay_requested.v1",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: no maps with non-string keys, no custom
        // serializers that error.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: RawEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let body = envelope.data.get();
        let parsed = match envelope.kind {
            "event.accepted.v1" => serde_json::from_str(body).map(Self::EventAccepted),
            "attempt.recorded.v1" => serde_json::from_str(body).map(Self::AttemptRecorded),
            "delivery.deferred.v1" => serde_json::from_str(body).map(Self::DeliveryDeferred),
            "retry.due.v1" => serde_json::from_str(body).map(Self::RetryDue),
            "tenant.created.v1" => serde_json::from_str(body).map(Self::TenantCreated),
            "endpoint.created.v1" => serde_json::from_str(body).map(Self::EndpointCreated),
            "endpoint.secret_rotated.v1" => {
                serde_json::from_str(body).map(Self::EndpointSecretRotated)
            }
            "endpoint.disabled.v1" => serde_json::from_str(body).map(Self::EndpointDisabled),
            "endpoint.circuit_opened.v1" => {
                serde_json::from_str(body).map(Self::EndpointCircuitOpened)
            }
            "endpoint.circuit_closed.v1" => {
                serde_json::from_str(body).map(Self::EndpointCircuitClosed)
            }
            "delivery.replay_requested.v1" => serde_json::from_str(body).map(Self::ReplayRequested),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        };
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
            Self::EndpointSecretRotated(rotated) => Some((rotated.tenant_id, rotated.endpoint_id)),
            Self::EndpointDisabled(disabled) => Some((disabled.tenant_id, disabled.endpoint_id)),
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
    fn unknown_types_are_reported_not_guessed() {
        let error = LogMessage::decode(br#"{"type":"event.accepted.v9","data":{}}"#)
            .expect_err("must not decode");
        assert!(matches!(error, DecodeError::UnknownType(kind) if kind == "event.accepted.v9"));
    }
}
