//! The contract of Herald's append-only log.
//!
//! Everything that happens to an event is a message in NATS JetStream. This crate names those
//! messages (past-tense facts, versioned per variant), the subjects they are published on and
//! the streams that hold them. Outside subscribers use the JSON Schema generated from these
//! types (`schemas/json/`). The crate does no I/O so that every service, test and tool can
//! share it.

pub mod config_changes;
pub mod ids;
pub mod log_message;
pub mod messages;
pub mod objectives;
pub mod operational;
pub mod replays;
pub mod status;
pub mod subjects;

pub use config_changes::{
    Actor, ApiKeyCreated, ApiKeyRevoked, ApiKeyScope, EndpointDeleted, EndpointUpdated,
    TenantUpdated,
};
pub use ids::{AttemptId, EndpointId, EventId, ReplayId, TenantId};
pub use log_message::{DecodeError, LogMessage};
pub use messages::{
    AttemptOutcome, AttemptRecorded, DeferralReason, DeliveryDeferred, EndpointCircuitClosed,
    EndpointCircuitOpened, EndpointCreated, EndpointDisabled, EndpointSecretRotated,
    EndpointSnapshot, ErrorClass, EventAccepted, RateLimit, RetryDue, RetryPolicyOverride,
    SignatureScheme, TenantCreated,
};
pub use objectives::{EndpointSlo, EndpointSloBurning, SloAlert};
pub use operational::OperationalEvent;
pub use replays::{
    ReplayFinished, ReplayMode, ReplayProgressed, ReplayRequested, ReplayStarted, ReplayedDelivery,
};
pub use status::{DeliveriesCondition, DeliveryStatus, EventStatus, UnknownWord};
pub use subjects::Namespace;
