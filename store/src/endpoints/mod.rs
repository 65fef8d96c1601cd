//! The `endpoints` table: tenants' receiver URLs, their signing secrets and delivery options.
//! Every statement on it is here. Signing secrets and custom header values are sealed
//! ([`crate::secrets_vault`]) by the functions that write them and opened only by
//! [`for_delivery`]; nothing else reads them. Command creates endpoints and rotates their secrets and
//! routes events with them, query lists them, delivery reads what it needs for an attempt and
//! disables an endpoint whose receiver answered 410 Gone.
//!
//! Joins that read `endpoints` for a single query stay with their reader:
//! - `delivery/src/ordered_lanes/leases.rs`: gives every ordered endpoint a lane
//!   (`INSERT INTO ordered_lanes … SELECT endpoint_id FROM endpoints WHERE ordered`) and reads
//!   the tenant and creation time of the lanes a process holds
//!   (`ordered_lanes JOIN endpoints`);
//! - `delivery/src/overdue.rs`: unfinished deliveries of unordered endpoints that are overdue
//!   (`deliveries JOIN events JOIN endpoints`, `NOT ordered`).

mod sealed;

pub use sealed::{
    erase_expired_previous_secrets, reseal, reseal_plaintext, values_by_key, ResealReport,
    SealedHeaders,
};

use crate::secrets_vault::SecretsVault;
use chrono::{DateTime, Utc};
use herald_rules::sealing::OpenError;
use herald_schemas::{
    EndpointId, EndpointSlo, EndpointSnapshot, RateLimit, RetryPolicyOverride, SignatureScheme,
    TenantId,
};
use sealed::{header_context, secret_context};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

/// What an endpoint signs with, as created or rotated: the secret text (`whsec_…` or, for
/// ed25519, the private key's `whsk_…`) and the public key to publish, if any.
pub struct SigningMaterial<'a> {
    pub secret: &'a str,
    pub public_key: Option<&'a str>,
}

/// Creates the endpoint described by `endpoint`, signing with `signing`; secret and header
/// values are sealed before they are written.
#[tracing::instrument(
    skip_all,
    fields(tenant_id = %endpoint.tenant_id, endpoint_id = %endpoint.endpoint_id),
    err
)]
pub async fn insert(
    connection: &mut PgConnection,
    vault: &SecretsVault,
    endpoint: &EndpointSnapshot,
    signing: SigningMaterial<'_>,
    headers: &SealedHeaders,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO endpoints (endpoint_id, tenant_id, url, description, event_types, enabled, \
         secret, created_at, updated_at, rate_limit_per_second, rate_limit_burst, retry_policy, \
         ordered, custom_headers, signature_scheme, public_key, slo) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(endpoint.endpoint_id.as_uuid())
    .bind(endpoint.tenant_id.as_uuid())
    .bind(&endpoint.url)
    .bind(&endpoint.description)
    .bind(&endpoint.event_types)
    .bind(endpoint.enabled)
    .bind(vault.seal(signing.secret, &secret_context(endpoint.endpoint_id)))
    .bind(endpoint.created_at)
    .bind(endpoint.updated_at)
    .bind(endpoint.rate_limit.map(|limit| limit.per_second as i32))
    .bind(endpoint.rate_limit.map(|limit| limit.burst as i32))
    .bind(endpoint.retry_policy.map(Json))
    .bind(endpoint.ordered)
    .bind(headers.stored())
    .bind(endpoint.signature_scheme.as_str())
    .bind(signing.public_key)
    .bind(endpoint.slo.map(Json))
    .execute(connection)
    .await?;
    Ok(())
}

/// Makes `signing` the endpoint's signing material; the current secret stays valid as the
/// previous one until `previous_secret_expires_at`. `false` when the tenant has no such
/// endpoint.
#[tracing::instrument(skip_all, fields(%tenant_id, %endpoint_id), err)]
pub async fn rotate_secret(
    connection: &mut PgConnection,
    vault: &SecretsVault,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
    signing: SigningMaterial<'_>,
    rotated_at: DateTime<Utc>,
    previous_secret_expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE endpoints SET previous_secret = secret, previous_secret_expires_at = $3, \
           secret = $4, public_key = $6, updated_at = $5 \
         WHERE endpoint_id = $1 AND tenant_id = $2",
    )
    .bind(endpoint_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .bind(previous_secret_expires_at)
    .bind(vault.seal(signing.secret, &secret_context(endpoint_id)))
    .bind(rotated_at)
    .bind(signing.public_key)
    .execute(connection)
    .await?
    .rows_affected();
    Ok(updated > 0)
}

/// The signature scheme of one of the tenant's endpoints; `None` when there is no such
/// endpoint.
pub async fn signature_scheme(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
) -> Result<Option<SignatureScheme>, sqlx::Error> {
    let scheme: Option<String> = sqlx::query_scalar(
        "SELECT signature_scheme FROM endpoints WHERE endpoint_id = $1 AND tenant_id = $2",
    )
    .bind(endpoint_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .fetch_optional(connection)
    .await?;
    Ok(scheme.map(|text| SignatureScheme::parse(&text).unwrap_or_default()))
}

/// An endpoint as a change starts from, its row locked until the transaction ends.
pub struct LockedEndpoint {
    pub snapshot: EndpointSnapshot,
    pub headers: SealedHeaders,
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    url: String,
    description: Option<String>,
    event_types: Option<Vec<String>>,
    enabled: bool,
    rate_limit_per_second: Option<i32>,
    rate_limit_burst: Option<i32>,
    retry_policy: Option<Json<RetryPolicyOverride>>,
    ordered: bool,
    custom_headers: Option<Json<SealedHeaders>>,
    signature_scheme: String,
    slo: Option<Json<EndpointSlo>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One of the tenant's endpoints, locked for a change; `None` when there is no such endpoint.
#[tracing::instrument(skip_all, fields(%tenant_id, %endpoint_id), err)]
pub async fn lock_for_change(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
) -> Result<Option<LockedEndpoint>, sqlx::Error> {
    let row: Option<SnapshotRow> = sqlx::query_as(
        "SELECT url, description, event_types, enabled, rate_limit_per_second, \
           rate_limit_burst, retry_policy, ordered, custom_headers, signature_scheme, slo, \
           created_at, updated_at \
         FROM endpoints WHERE endpoint_id = $1 AND tenant_id = $2 FOR UPDATE",
    )
    .bind(endpoint_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .fetch_optional(connection)
    .await?;
    Ok(row.map(|row| {
        let headers = row
            .custom_headers
            .map(|headers| headers.0)
            .unwrap_or_default();
        LockedEndpoint {
            snapshot: EndpointSnapshot {
                endpoint_id,
                tenant_id,
                url: row.url,
                event_types: row.event_types,
                enabled: row.enabled,
                description: row.description,
                rate_limit: rate_limit(row.rate_limit_per_second, row.rate_limit_burst),
                retry_policy: row.retry_policy.map(|policy| policy.0),
                ordered: row.ordered,
                header_names: headers.names(),
                signature_scheme: SignatureScheme::parse(&row.signature_scheme).unwrap_or_default(),
                slo: row.slo.map(|slo| slo.0),
                created_at: row.created_at,
                updated_at: row.updated_at,
            },
            headers,
        }
    }))
}

/// Writes a changed endpoint (locked by [`lock_for_change`]). Enabling it clears the reason
/// Herald disabled it for.
#[tracing::instrument(
    skip_all,
    fields(tenant_id = %endpoint.tenant_id, endpoint_id = %endpoint.endpoint_id),
    err
)]
pub async fn update(
    connection: &mut PgConnection,
    endpoint: &EndpointSnapshot,
    headers: &SealedHeaders,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE endpoints SET url = $3, description = $4, event_types = $5, enabled = $6, \
           disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, \
           rate_limit_per_second = $7, rate_limit_burst = $8, retry_policy = $9, ordered = $10, \
           custom_headers = $11, updated_at = $12, slo = $13 \
         WHERE endpoint_id = $1 AND tenant_id = $2",
    )
    .bind(endpoint.endpoint_id.as_uuid())
    .bind(endpoint.tenant_id.as_uuid())
    .bind(&endpoint.url)
    .bind(&endpoint.description)
    .bind(&endpoint.event_types)
    .bind(endpoint.enabled)
    .bind(endpoint.rate_limit.map(|limit| limit.per_second as i32))
    .bind(endpoint.rate_limit.map(|limit| limit.burst as i32))
    .bind(endpoint.retry_policy.map(Json))
    .bind(endpoint.ordered)
    .bind(headers.stored())
    .bind(endpoint.updated_at)
    .bind(endpoint.slo.map(Json))
    .execute(connection)
    .await?;
    Ok(())
}

/// Deletes one of the tenant's endpoints, its sealed secrets and headers with it. `false`
/// when there is no such endpoint.
#[tracing::instrument(skip_all, fields(%tenant_id, %endpoint_id), err)]
pub async fn delete(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM endpoints WHERE endpoint_id = $1 AND tenant_id = $2")
        .bind(endpoint_id.as_uuid())
        .bind(tenant_id.as_uuid())
        .execute(connection)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

fn rate_limit(per_second: Option<i32>, burst: Option<i32>) -> Option<RateLimit> {
    per_second.map(|per_second| RateLimit {
        per_second: per_second.max(1) as u32,
        burst: burst.unwrap_or(per_second).max(1) as u32,
    })
}

/// An enabled endpoint as routing sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct EndpointRoute {
    #[sqlx(try_from = "uuid::Uuid")]
    pub endpoint_id: EndpointId,
    /// `None` subscribes to every event type.
    pub event_types: Option<Vec<String>>,
}

/// The tenant's enabled endpoints, in `endpoint_id` order: what ingest routes events to.
#[tracing::instrument(level = "debug", skip_all, fields(%tenant_id), err(level = "debug"))]
pub async fn routes_for_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
) -> Result<Vec<EndpointRoute>, sqlx::Error> {
    sqlx::query_as(
        "SELECT endpoint_id, event_types FROM endpoints \
         WHERE tenant_id = $1 AND enabled ORDER BY endpoint_id",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(pool)
    .await
}

/// What a delivery worker needs to make an attempt (`delivery/src/endpoint_registry.rs`),
/// its secrets and header values opened.
#[derive(Debug)]
pub struct DeliveryEndpoint {
    pub url: String,
    /// The current signing secret (`whsec_…`, or `whsk_…` for ed25519).
    pub secret: String,
    /// The previous secret, only while a rotation's grace period runs.
    pub previous_secret: Option<String>,
    pub signature_scheme: SignatureScheme,
    /// Custom headers sent with every delivery, as (name, value).
    pub headers: Vec<(String, String)>,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
    pub retry_policy: Option<RetryPolicyOverride>,
    /// Delivered by an ordered lane, one event at a time.
    pub ordered: bool,
}

#[derive(sqlx::FromRow)]
struct DeliveryEndpointRow {
    url: String,
    secret: String,
    previous_secret: Option<String>,
    signature_scheme: String,
    custom_headers: Option<Json<SealedHeaders>>,
    enabled: bool,
    rate_limit_per_second: Option<i32>,
    rate_limit_burst: Option<i32>,
    retry_policy: Option<Json<RetryPolicyOverride>>,
    ordered: bool,
}

/// Why an endpoint could not be read for delivery.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryEndpointError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("a sealed value of endpoint {endpoint_id} does not open: {source}")]
    Sealed {
        endpoint_id: EndpointId,
        source: OpenError,
    },
}

/// The endpoint as delivery needs it, whatever its tenant; `None` when it does not exist.
/// A stored rate limit below 1 reads as 1, and a missing burst as the rate.
#[tracing::instrument(level = "debug", skip_all, fields(%endpoint_id), err(level = "debug"))]
pub async fn for_delivery(
    pool: &PgPool,
    vault: &SecretsVault,
    endpoint_id: EndpointId,
) -> Result<Option<DeliveryEndpoint>, DeliveryEndpointError> {
    let row: Option<DeliveryEndpointRow> = sqlx::query_as(
        "SELECT url, secret, \
           CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret, \
           signature_scheme, custom_headers, enabled, rate_limit_per_second, rate_limit_burst, \
           retry_policy, ordered \
         FROM endpoints WHERE endpoint_id = $1",
    )
    .bind(endpoint_id.as_uuid())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let open = |stored: &str, context: &str| {
        vault
            .open(stored, context)
            .map_err(|source| DeliveryEndpointError::Sealed {
                endpoint_id,
                source,
            })
    };
    let context = secret_context(endpoint_id);
    let secret = open(&row.secret, &context)?;
    let previous_secret = match &row.previous_secret {
        Some(stored) => Some(open(stored, &context)?),
        None => None,
    };
    let mut headers = Vec::new();
    for header in row
        .custom_headers
        .map(|headers| headers.0 .0)
        .unwrap_or_default()
    {
        let value = open(&header.value, &header_context(endpoint_id, &header.name))?;
        headers.push((header.name, value));
    }
    Ok(Some(DeliveryEndpoint {
        url: row.url,
        secret,
        previous_secret,
        signature_scheme: SignatureScheme::parse(&row.signature_scheme).unwrap_or_default(),
        headers,
        enabled: row.enabled,
        rate_limit: rate_limit(row.rate_limit_per_second, row.rate_limit_burst),
        retry_policy: row.retry_policy.map(|policy| policy.0),
        ordered: row.ordered,
    }))
}

/// Disables an endpoint whose receiver answered 410 Gone, with `reason` shown to its tenant.
/// Returns how many rows changed: 1 for the attempt that disabled it, 0 when it was already
/// disabled (or is gone), so that only one attempt announces the change. Replaces the
/// `UPDATE endpoints SET enabled = false …` of `delivery/src/attempt.rs`
/// (`disable_gone_endpoint`); run it in the transaction that stages the outbox message.
#[tracing::instrument(skip_all, fields(%endpoint_id), err)]
pub async fn disable_on_gone(
    connection: &mut PgConnection,
    endpoint_id: EndpointId,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = now() \
         WHERE endpoint_id = $1 AND enabled",
    )
    .bind(endpoint_id.as_uuid())
    .bind(reason)
    .execute(connection)
    .await?
    .rows_affected();
    Ok(updated)
}

/// An endpoint as its tenant sees it: everything but the secrets.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EndpointRecord {
    #[sqlx(try_from = "uuid::Uuid")]
    pub endpoint_id: EndpointId,
    pub url: String,
    /// `None` delivers every type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    /// Why Herald disabled the endpoint (e.g. its receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub description: Option<String>,
    /// `{"per_second", "burst"}` when deliveries are rate limited.
    pub rate_limit: Option<Json<serde_json::Value>>,
    /// The endpoint's own retry settings, as stored.
    pub retry_policy: Option<Json<serde_json::Value>>,
    pub ordered: bool,
    /// Names of the custom headers; their values are never read back.
    pub header_names: Vec<String>,
    /// `v1` (HMAC-SHA256) or `v1a` (ed25519).
    pub signature_scheme: String,
    /// The `whpk_…` key that verifies `v1a` signatures.
    pub public_key: Option<String>,
    /// `{"success_rate", "window_days"}`: the endpoint's delivery objective.
    pub slo: Option<Json<EndpointSlo>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const RECORD_COLUMNS: &str =
    "endpoint_id, url, event_types, enabled, disabled_reason, description, \
     CASE WHEN rate_limit_per_second IS NULL THEN NULL ELSE json_build_object('per_second', \
       rate_limit_per_second, 'burst', rate_limit_burst) END AS rate_limit, retry_policy, ordered, \
     ARRAY(SELECT h->>'name' FROM jsonb_array_elements(COALESCE(custom_headers, '[]'::jsonb)) h) \
       AS header_names, signature_scheme, public_key, slo, created_at, updated_at";

/// The tenant's endpoints, enabled or not, in `endpoint_id` order.
#[tracing::instrument(level = "debug", skip_all, fields(%tenant_id), err(level = "debug"))]
pub async fn list_for_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
) -> Result<Vec<EndpointRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM endpoints WHERE tenant_id = $1 ORDER BY endpoint_id"
    ))
    .bind(tenant_id.as_uuid())
    .fetch_all(pool)
    .await
}

/// One of the tenant's endpoints; `None` when the tenant has no such endpoint.
#[tracing::instrument(
    level = "debug",
    skip_all,
    fields(%tenant_id, %endpoint_id),
    err(level = "debug")
)]
pub async fn get_for_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
) -> Result<Option<EndpointRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM endpoints WHERE endpoint_id = $1 AND tenant_id = $2"
    ))
    .bind(endpoint_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .fetch_optional(pool)
    .await
}
