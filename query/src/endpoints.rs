//! `GET /v1/webhook_endpoints[/{endpoint_id}]`: a tenant's endpoints, read from the
//! `endpoints` table through `herald_store::endpoints`. Secrets are shown only when an
//! endpoint is created.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, AuthenticatedTenant};
use herald_schemas::EndpointId;
use herald_store::endpoints::{self, EndpointRecord};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub endpoint_id: Uuid,
    pub url: String,
    /// Event types delivered; null delivers every type.
    pub events: Option<Vec<String>>,
    pub enabled: bool,
    /// Why the endpoint was disabled by Herald (e.g. its receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub description: Option<String>,
    /// `{"per_second", "burst"}` when deliveries are rate limited.
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<serde_json::Value>,
    /// The endpoint's own retry settings (`max_attempts`, `initial_delay_ms`, `multiplier`,
    /// `max_delay_ms`, `deadline_ms`); settings not shown keep the service default.
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<serde_json::Value>,
    /// Deliveries are made one at a time in ingest order.
    pub ordered: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
}

impl From<EndpointRecord> for EndpointView {
    fn from(endpoint: EndpointRecord) -> Self {
        Self {
            endpoint_id: endpoint.endpoint_id.as_uuid(),
            url: endpoint.url,
            events: endpoint.event_types,
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason,
            description: endpoint.description,
            rate_limit: endpoint.rate_limit.map(|json| json.0),
            retry_policy: endpoint.retry_policy.map(|json| json.0),
            ordered: endpoint.ordered,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

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
    let data = endpoints::list_for_tenant(&state.pool, tenant_id)
        .await?
        .into_iter()
        .map(EndpointView::from)
        .collect();
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
    let endpoint_id = EndpointId(parse_uuid("endpoint_id", &endpoint_id)?);
    endpoints::get_for_tenant(&state.pool, tenant_id, endpoint_id)
        .await?
        .map(|endpoint| Json(EndpointView::from(endpoint)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "endpoint {endpoint_id} does not exist for this tenant"
            ))
        })
}
