//! The `portal_sessions` table: short-lived tokens that open the dashboard for one tenant
//! without its API key. Query creates them (`POST /v1/portal_sessions`) and serves the
//! dashboard page of one; every service's authenticator (`herald-http`) looks them up.
//! Only a SHA-256 hash of a token is stored.

use chrono::{DateTime, Utc};
use herald_schemas::TenantId;
use sqlx::PgPool;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PortalSession {
    pub tenant_id: uuid::Uuid,
    pub read_only: bool,
    /// Origins allowed to embed the dashboard in a frame.
    pub frame_ancestors: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new session and deletes sessions that expired a day ago or more (a portal page
/// left open after its expiry still gets its clear 401 for a while).
#[tracing::instrument(skip_all, fields(tenant_id = %tenant_id), err)]
pub async fn insert(
    pool: &PgPool,
    token_hash: &[u8; 32],
    tenant_id: TenantId,
    read_only: bool,
    frame_ancestors: &[String],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query("DELETE FROM portal_sessions WHERE expires_at < now() - interval '1 day'")
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO portal_sessions (token_hash, tenant_id, read_only, frame_ancestors, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&token_hash[..])
    .bind(tenant_id.as_uuid())
    .bind(read_only)
    .bind(frame_ancestors)
    .bind(expires_at)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}

/// The session of a token hash, unless it has expired.
#[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
pub async fn find_unexpired(
    pool: &PgPool,
    token_hash: &[u8; 32],
) -> Result<Option<PortalSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, read_only, frame_ancestors, expires_at FROM portal_sessions \
         WHERE token_hash = $1 AND expires_at > now()",
    )
    .bind(&token_hash[..])
    .fetch_optional(pool)
    .await
}
