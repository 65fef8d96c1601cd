//! Who changes configuration, and the changes added with endpoint management, API keys and
//! tenant administration. Every configuration message names its [`Actor`], so the log is an
//! audit trail on its own.

use crate::ids::{EndpointId, TenantId};
use crate::messages::{EndpointSnapshot, RateLimit};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who made a configuration change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A request authenticated with one of the tenant's API keys.
    ApiKey { key_id: Uuid },
    /// An operator, with the admin token.
    Operator,
    /// Herald itself, e.g. disabling an endpoint whose receiver answered 410 Gone.
    Herald,
    /// Written before Herald named who made changes (the `.v1` configuration messages).
    #[default]
    Unrecorded,
}

impl Actor {
    /// `api_key:<key_id>`, `operator`, `herald` or `unrecorded`: for logs and filters.
    pub fn label(&self) -> String {
        match self {
            Self::ApiKey { key_id } => format!("api_key:{key_id}"),
            Self::Operator => "operator".to_owned(),
            Self::Herald => "herald".to_owned(),
            Self::Unrecorded => "unrecorded".to_owned(),
        }
    }
}

/// What an API key may do: `read` covers every `GET`, `write` every other request.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    Read,
    Write,
}

impl ApiKeyScope {
    pub const ALL: [Self; 2] = [Self::Read, Self::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// An operator changed a tenant: its name, whether it is suspended, its ingest limit. The
/// message carries the tenant as it is after the change.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct TenantUpdated {
    pub tenant_id: TenantId,
    pub name: String,
    /// Every request of a suspended tenant is refused with 403; nothing is delivered for it
    /// that was not accepted before.
    pub suspended: bool,
    /// Events accepted per second, across every command process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_rate_limit: Option<RateLimit>,
    /// The fields this change set.
    pub changed: Vec<String>,
    pub updated_at: DateTime<Utc>,
    pub actor: Actor,
}

/// A tenant got a new API key. The key itself is never in the log.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyCreated {
    pub key_id: Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub scopes: Vec<ApiKeyScope>,
    pub created_at: DateTime<Utc>,
    pub actor: Actor,
}

/// An API key was revoked: every process refuses it from now on.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyRevoked {
    pub key_id: Uuid,
    pub tenant_id: TenantId,
    pub revoked_at: DateTime<Utc>,
    pub actor: Actor,
}

/// An endpoint's configuration changed; `endpoint` is how it is now.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointUpdated {
    pub endpoint: EndpointSnapshot,
    /// The fields the request set, e.g. `["url", "headers"]`.
    pub changed: Vec<String>,
    pub actor: Actor,
}

/// An endpoint was deleted: it receives nothing more, and its deliveries still pending end at
/// their next due time, recorded as failed with `endpoint_unavailable`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointDeleted {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub deleted_at: DateTime<Utc>,
    pub actor: Actor,
}
