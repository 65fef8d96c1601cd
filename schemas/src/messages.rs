//! The facts Herald records. Each type here is the payload of one versioned variant of
//! [`crate::LogMessage`]; once published, a variant's shape never changes: a new shape is a new
//! variant (`….v2`) and old payloads are upcast when decoded.

use crate::config_changes::Actor;
use crate::ids::{AttemptId, EndpointId, EventId, TenantId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A producer's event was validated, routed and durably appended to the log.
///
/// The endpoints it must reach are decided at ingest, so the log alone says which deliveries
/// exist, and a configuration change never re-routes an event already accepted.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventAccepted {
    pub event_id: EventId,
    pub tenant_id: TenantId,
    /// The producer's event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// The producer's payload, byte for byte as it was accepted.
    #[schemars(with = "serde_json::Value")]
    pub payload: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub accepted_at: DateTime<Utc>,
    /// W3C trace id (32 lowercase hex digits) shared by every attempt of this event.
    pub trace_id: String,
    /// Endpoints subscribed to this event when it was accepted; one delivery each.
    pub endpoint_ids: Vec<EndpointId>,
    /// The producer's `target_endpoints`, when it named some: the event went only to those
    /// of them that were subscribed (kept so that a left-out endpoint can be explained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_endpoints: Option<Vec<EndpointId>>,
    /// No attempt before this time (scheduled delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_after: Option<DateTime<Utc>>,
    /// No attempt after this time: a delivery not done by then is recorded as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl EventAccepted {
    /// When its deliveries became due: at acceptance, or at `deliver_after` for a scheduled
    /// event. Retry deadlines count from here, so a scheduled delivery gets its whole retry
    /// schedule however far ahead it was scheduled.
    pub fn due_since(&self) -> DateTime<Utc> {
        self.deliver_after
            .map_or(self.accepted_at, |after| after.max(self.accepted_at))
    }
}

/// How one attempt ended, and so what happens to its delivery next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx; the delivery is done.
    Succeeded,
    /// The attempt failed and another one is scheduled at `next_attempt_at`.
    RetryScheduled,
    /// The attempt failed in a way retrying cannot fix (e.g. 400, redirect); the delivery is done.
    Failed,
    /// The attempt failed and the retry policy is exhausted; the delivery is done.
    DeadLettered,
    /// The event's `expires_at` passed before the delivery succeeded; nothing more is sent.
    Expired,
}

impl AttemptOutcome {
    pub const ALL: [Self; 5] = [
        Self::Succeeded,
        Self::RetryScheduled,
        Self::Failed,
        Self::DeadLettered,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::RetryScheduled => "retry_scheduled",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Expired => "expired",
        }
    }

    /// Whether no further attempt follows this one.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::RetryScheduled)
    }
}

/// Why an attempt did not succeed, coarse enough to aggregate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The receiver answered 3xx; redirects are never followed.
    Http3xx,
    /// The receiver answered 429 Too Many Requests.
    Http429,
    /// The receiver answered another 4xx.
    Http4xx,
    /// The receiver answered 5xx.
    Http5xx,
    /// A status outside 100–599 or another protocol violation.
    HttpInvalid,
    /// No connection could be made (refused, reset, unreachable).
    Connection,
    /// The host name did not resolve.
    Dns,
    /// The connect, first-byte or total deadline passed.
    Timeout,
    /// The target resolved to an address the SSRF guard refuses.
    TargetRefused,
    /// The endpoint was deleted or disabled before the attempt.
    EndpointUnavailable,
    /// The delivery's deadline passed while the endpoint's circuit breaker kept it parked.
    CircuitOpen,
    /// The delivery's deadline passed while the global retry budget kept it waiting.
    RetryBudget,
    /// The delivery's deadline passed while the endpoint had as many requests in flight and
    /// waiting as it may have.
    EndpointBusy,
    /// The event's `expires_at` passed before the delivery was made.
    Expired,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http3xx => "http_3xx",
            Self::Http429 => "http_429",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpInvalid => "http_invalid",
            Self::Connection => "connection",
            Self::Dns => "dns",
            Self::Timeout => "timeout",
            Self::TargetRefused => "target_refused",
            Self::EndpointUnavailable => "endpoint_unavailable",
            Self::CircuitOpen => "circuit_open",
            Self::RetryBudget => "retry_budget",
            Self::EndpointBusy => "endpoint_busy",
            Self::Expired => "expired",
        }
    }
}

/// One HTTP attempt to deliver an event to an endpoint, and what it decided.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AttemptRecorded {
    pub attempt_id: AttemptId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub trace_id: String,
    pub event_type: String,
    /// 1 for the first attempt of this delivery.
    pub attempt_number: u32,
    /// When the event was accepted, so end-to-end latency needs no join.
    pub event_accepted_at: DateTime<Utc>,
    /// When this attempt was due.
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The receiver's status code, when it answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// A short human-readable reason; never contains secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// From the start of the request to the end of the response (or the failure).
    pub latency_ms: u32,
    /// SHA-256 (hex) of the first 64 KiB of the response body, when there was a response.
    /// The body itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body_hash: Option<String>,
    pub outcome: AttemptOutcome,
    /// Set when `outcome` is `retry_scheduled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Bytes of the request body, when the receiver answered (0 otherwise, and in
    /// `attempt.recorded.v1`, which did not count them).
    #[serde(default)]
    pub request_bytes: u32,
    /// Bytes of the response body Herald read (at most 64 KiB; 0 in `attempt.recorded.v1`).
    #[serde(default)]
    pub response_bytes: u32,
}

/// A delivery's next attempt is due. Internal to `delivery/`: published on the retry stream
/// so that no retry timer lives only in a process's memory.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct RetryDue {
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    /// The log stream sequence of the event's `EventAccepted`, to read its payload back.
    pub event_sequence: u64,
    /// The number the next attempt will carry.
    pub attempt_number: u32,
    pub due_at: DateTime<Utc>,
}

/// A delivery's next attempt was put off without being made, until `until`. Recorded so that
/// the read model knows when the delivery is really due (a delivery overdue there is one the
/// log lost track of, and is dispatched again) and why it waits.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryDeferred {
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    /// The number the attempt will carry when it is made.
    pub attempt_number: u32,
    pub deferred_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: DeferralReason,
}

/// Why an attempt was put off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeferralReason {
    /// The endpoint's `rate_limit` allows no request before `until`.
    RateLimited,
    /// The endpoint's circuit breaker is open.
    CircuitOpen,
    /// The service's retry budget is spent.
    RetryBudget,
    /// The endpoint has as many requests in flight and waiting as it may have.
    EndpointBusy,
}

impl DeferralReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::CircuitOpen => "circuit_open",
            Self::RetryBudget => "retry_budget",
            Self::EndpointBusy => "endpoint_busy",
        }
    }
}

/// A tenant was created by an operator.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TenantCreated {
    pub tenant_id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Who created it (`unrecorded` in `tenant.created.v1`).
    #[serde(default)]
    pub actor: Actor,
}

/// An endpoint's configuration as it is after a change. The signing secret is never included.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSnapshot {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    /// Event types delivered to this endpoint; absent means every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deliveries to this endpoint are spaced to stay within this rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Retry policy settings that differ from the service's default for this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicyOverride>,
    /// Deliveries are made one at a time, in the order the events were accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
    /// Names of the custom headers sent with every delivery; their values are never in the
    /// log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_names: Vec<String>,
    /// How deliveries are signed.
    #[serde(default)]
    pub signature_scheme: SignatureScheme,
    /// The endpoint's delivery objective, when it has one (not in `endpoint.created.v1`,
    /// `.v2` and `endpoint.updated.v1`, which predate objectives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::objectives::EndpointSlo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an endpoint's deliveries are signed (Standard Webhooks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SignatureScheme {
    /// `v1,<base64 HMAC-SHA256>` with the endpoint's `whsec_` secret.
    #[default]
    #[serde(rename = "v1")]
    HmacSha256,
    /// `v1a,<base64 ed25519 signature>`, verified with the endpoint's `whpk_` public key.
    #[serde(rename = "v1a")]
    Ed25519,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "v1",
            Self::Ed25519 => "v1a",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::HmacSha256, Self::Ed25519]
            .into_iter()
            .find(|scheme| scheme.as_str() == text)
    }
}

/// An endpoint's own retry policy: every field set here replaces the service default; fields
/// left out keep it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RetryPolicyOverride {
    /// Attempts in all, the first one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry (before jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    /// Factor by which each further delay grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Longest delay between two attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    /// How long after the event was accepted it may still be attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// A token bucket: `per_second` deliveries a second on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// An endpoint was created.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointCreated {
    pub endpoint: EndpointSnapshot,
    /// Who created it (`unrecorded` in `endpoint.created.v1`).
    #[serde(default)]
    pub actor: Actor,
}

/// An endpoint's signing secret was replaced. Until `previous_secret_expires_at` deliveries
/// are signed with both the new and the previous secret. No secret is included.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSecretRotated {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub rotated_at: DateTime<Utc>,
    pub previous_secret_expires_at: DateTime<Utc>,
    /// Who rotated it (`unrecorded` in `endpoint.secret_rotated.v1`).
    #[serde(default)]
    pub actor: Actor,
}

/// An endpoint stopped receiving deliveries, and why (e.g. its receiver answered 410 Gone).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointDisabled {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub reason: String,
    pub disabled_at: DateTime<Utc>,
    /// Who disabled it (`unrecorded` in `endpoint.disabled.v1`).
    #[serde(default)]
    pub actor: Actor,
}

/// An endpoint failed too often in a row: deliveries to it are parked until `until`, when
/// one probe is let through.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointCircuitOpened {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub opened_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub consecutive_failures: u32,
}

/// A probe to an endpoint whose breaker was open succeeded: deliveries flow again.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointCircuitClosed {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub closed_at: DateTime<Utc>,
}
