//! The `endpoints` table: tenants' receiver URLs, their signing secrets and delivery options.
//! Every statement on it is here. Command creates endpoints and rotates their secrets and
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

use chrono::{DateTime, Utc};
use herald_schemas::{EndpointId, EndpointSnapshot, RateLimit, RetryPolicyOverride, TenantId};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

/// Creates the endpoint described by `endpoint`, signing with `secret` (`whsec_…`).
#[tracing::instrument(
    skip_all,
    fields(tenant_id = %endpoint.tenant_id, endpoint_id = %endpoint.endpoint_id),
    err
)]
pub async fn insert(
    connection: &mut PgConnection,
    endpoint: &EndpointSnapshot,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO endpoints (endpoint_id, tenant_id, url, description, event_types, enabled, \
         secret, created_at, updated_at, rate_limit_per_second, rate_limit_burst, retry_policy, \
         ordered) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(endpoint.endpoint_id.as_uuid())
    .bind(endpoint.tenant_id.as_uuid())
    .bind(&endpoint.url)
    .bind(&endpoint.description)
    .bind(&endpoint.event_types)
    .bind(endpoint.enabled)
    .bind(secret)
    .bind(endpoint.created_at)
    .bind(endpoint.updated_at)
    .bind(endpoint.rate_limit.map(|limit| limit.per_second as i32))
    .bind(endpoint.rate_limit.map(|limit| limit.burst as i32))
    .bind(endpoint.retry_policy.map(Json))
    .bind(endpoint.ordered)
    .execute(connection)
    .await?;
    Ok(())
}

/// Makes `secret` the endpoint's signing secret; the current one stays valid as the previous
/// secret until `previous_secret_expires_at`. `false` when the tenant has no such endpoint.
#[tracing::instrument(skip_all, fields(%tenant_id, %endpoint_id), err)]
pub async fn rotate_secret(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    endpoint_id: EndpointId,
    secret: &str,
    rotated_at: DateTime<Utc>,
    previous_secret_expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE endpoints SET previous_secret = secret, previous_secret_expires_at = $3, secret = $4, \
         updated_at = $5 WHERE endpoint_id = $1 AND tenant_id = $2",
    )
    .bind(endpoint_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .bind(previous_secret_expires_at)
    .bind(secret)
    .bind(rotated_at)
    .execute(connection)
    .await?
    .rows_affected();
    Ok(updated > 0)
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

/// What a delivery worker needs to make an attempt (`delivery/src/endpoint_registry.rs`).
#[derive(Debug)]
pub struct DeliveryEndpoint {
    pub url: String,
    /// The current signing secret, as stored (`whsec_…`).
    pub secret: String,
    /// The previous secret, only while a rotation's grace period runs.
    pub previous_secret: Option<String>,
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
    enabled: bool,
    rate_limit_per_second: Option<i32>,
    rate_limit_burst: Option<i32>,
    retry_policy: Option<Json<RetryPolicyOverride>>,
    ordered: bool,
}

/// The endpoint as delivery needs it, whatever its tenant; `None` when it does not exist.
/// Replaces the `SELECT … FROM endpoints WHERE endpoint_id = $1` of
/// `delivery/src/endpoint_registry.rs`: a stored rate limit below 1 reads as 1, and a missing
/// burst as the rate.
#[tracing::instrument(level = "debug", skip_all, fields(%endpoint_id), err(level = "debug"))]
pub async fn for_delivery(
    pool: &PgPool,
    endpoint_id: EndpointId,
) -> Result<Option<DeliveryEndpoint>, sqlx::Error> {
    let row: Option<DeliveryEndpointRow> = sqlx::query_as(
        "SELECT url, secret, \
           CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret, \
           enabled, rate_limit_per_second, rate_limit_burst, retry_policy, ordered \
         FROM endpoints WHERE endpoint_id = $1",
    )
    .bind(endpoint_id.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| DeliveryEndpoint {
        url: row.url,
        secret: row.secret,
        previous_secret: row.previous_secret,
        enabled: row.enabled,
        rate_limit: row.rate_limit_per_second.map(|per_second| RateLimit {
            per_second: per_second.max(1) as u32,
            burst: row.rate_limit_burst.unwrap_or(per_second).max(1) as u32,
        }),
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const RECORD_COLUMNS: &str = "endpoint_id, url, event_types, enabled, disabled_reason, description, \
     CASE WHEN rate_limit_per_second IS NULL THEN NULL ELSE json_build_object('per_second', \
       rate_limit_per_second, 'burst', rate_limit_burst) END AS rate_limit, retry_policy, ordered, created_at, updated_at";

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
