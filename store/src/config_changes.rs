//! The `config_changes` table: the audit trail of every configuration change, one row per
//! change, written in the transaction that makes it (by `herald_log::outbox`, next to the
//! change's log message) and read by `GET /v1/audit` (query). `data` is the log message's
//! body, which never holds a secret.

use chrono::{DateTime, Utc};
use herald_schemas::TenantId;
use sqlx::{PgConnection, PgPool};

/// Records one change.
#[tracing::instrument(skip_all, fields(%tenant_id, message_type), err)]
pub async fn record(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    message_type: &str,
    actor: &serde_json::Value,
    data: &serde_json::Value,
    changed_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO config_changes (change_id, tenant_id, changed_at, actor, message_type, data) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant_id.as_uuid())
    .bind(changed_at)
    .bind(actor)
    .bind(message_type)
    .bind(data)
    .execute(connection)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConfigChange {
    pub change_id: uuid::Uuid,
    pub changed_at: DateTime<Utc>,
    pub actor: serde_json::Value,
    pub message_type: String,
    pub data: serde_json::Value,
}

/// The tenant's changes at or after `since`, newest first, strictly after `before` (the
/// `(changed_at, change_id)` of the previous page's last row) when given.
#[tracing::instrument(level = "debug", skip_all, fields(%tenant_id), err(level = "debug"))]
pub async fn page_for_tenant(
    pool: &PgPool,
    tenant_id: TenantId,
    since: Option<DateTime<Utc>>,
    before: Option<(DateTime<Utc>, uuid::Uuid)>,
    limit: i64,
) -> Result<Vec<ConfigChange>, sqlx::Error> {
    sqlx::query_as(
        "SELECT change_id, changed_at, actor, message_type, data FROM config_changes \
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR changed_at >= $2) \
           AND ($3::timestamptz IS NULL OR (changed_at, change_id) < ($3, $4)) \
         ORDER BY changed_at DESC, change_id DESC LIMIT $5",
    )
    .bind(tenant_id.as_uuid())
    .bind(since)
    .bind(before.map(|(at, _)| at))
    .bind(before.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}
