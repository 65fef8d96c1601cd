//! `GET /v1/audit`: the tenant's configuration changes, newest first, each with who made it
//! (an API key's id, an operator, or Herald itself) and the change as the log recorded it.

use crate::params::{cut_page, parse_limit, parse_time, Cursor};
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::PageCursor;
use herald_http::{ApiError, ApiQuery, AuthenticatedTenant};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 250;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only changes made at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<PageCursor>)]
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
}

/// One configuration change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub change_id: Uuid,
    pub changed_at: DateTime<Utc>,
    /// Who made it: `{"kind": "api_key", "key_id": …}`, `{"kind": "operator"}` or
    /// `{"kind": "herald"}`.
    #[schema(value_type = Object)]
    pub actor: serde_json::Value,
    /// The log message type that recorded it, e.g. `endpoint.updated.v2`.
    pub change: String,
    /// The change as recorded in the log (its message body); never a secret.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage)),
    security(("api_key" = []))
)]
pub async fn list_changes(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(|text| parse_time("since", text))
        .transpose()?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let rows = herald_store::config_changes::page_for_tenant(
        &state.pool,
        tenant_id,
        since,
        cursor.map(|cursor| (cursor.at, cursor.id)),
        limit + 1,
    )
    .await?;
    let mut data: Vec<AuditEntry> = rows
        .into_iter()
        .map(|row| AuditEntry {
            change_id: row.change_id,
            changed_at: row.changed_at,
            actor: row.actor,
            change: row.message_type,
            data: row.data,
        })
        .collect();
    let next_cursor = cut_page(&mut data, limit, |last| Cursor {
        at: last.changed_at,
        id: last.change_id,
    });
    Ok(Json(AuditPage { data, next_cursor }))
}
