//! `GET /v1/webhook_endpoints[/{endpoint_id}]`: a tenant's endpoints. Secrets are shown only
//! when an endpoint is created.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, AuthenticatedTenant};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct EndpointView {
    pub endpoint_id: Uuid,
    pub url: String,
    /// Event types delivered; null delivers every type.
    #[sqlx(rename = "event_types")]
    pub events: Option<Vec<String>>,
    pub enabled: bool,
    /// Why the endpoint was disabled by Herald (e.g. its receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub description: Option<String>,
    /// `{"per_second", "burst"}` when deliveries are rate limited.
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<sqlx::types::Json<serde_json::Value>>,
    /// The endpoint's own retry settings (`max_attempts`, `initial_delay_ms`, `multiplier`,
    /// `max_delay_ms`, `deadline_ms`); settings not shown keep the service default.
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<sqlx::types::Json<serde_json::Value>>,
    /// Deliveries are made one at a time in ingest order.
    pub ordered: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
}

const COLUMNS: &str = "endpoint_id, url, event_types, enabled, disabled_reason, description, \
     CASE WHEN rate_limit_per_second IS NULL THEN NULL ELSE json_build_object('per_second', \
       rate_limit_per_second, 'burst', rate_limit_burst) END AS rate_limit, retry_policy, ordered, created_at, updated_at";

#[utoipa::path(
    get, path = "/v1/webhook_endpoints", tag = "endpoints",
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_endpoints(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
) -> Result<Json<EndpointList>, ApiError> {
    let data = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE tenant_id = $1 ORDER BY endpoint_id"
    ))
    .bind(tenant_id.as_uuid())
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(EndpointList { data }))
}

#[utoipa::path(
    get, path = "/v1/webhook_endpoints/{endpoint_id}", tag = "endpoints",
    params(("endpoint_id" = Uuid, Path)),
    responses(
        (status = 200, body = EndpointView),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_endpoint(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    Path(endpoint_id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint_id = parse_uuid("endpoint_id", &endpoint_id)?;
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE endpoint_id = $1 AND tenant_id = $2"
    ))
    .bind(endpoint_id)
    .bind(tenant_id.as_uuid())
    .fetch_optional(&state.pool)
    .await?
    .map(Json)
    .ok_or_else(|| {
        ApiError::NotFound(format!(
            "endpoint {endpoint_id} does not exist for this tenant"
        ))
    })
}
