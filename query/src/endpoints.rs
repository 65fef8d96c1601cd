//! `GET /v1/webhook_endpoints[/{endpoint_id}]`: a tenant's endpoints, read from the
//! `endpoints` table through `herald_store::endpoints`. Secrets are shown only when an
//! endpoint is created.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, Caller};
use herald_schemas::EndpointId;
use herald_store::endpoints::{self, EndpointRecord};
use serde::Serialize;
use std::collections::HashMap;
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
    /// Names of the custom headers sent with every delivery; values are never shown.
    pub header_names: Vec<String>,
    /// `v1` (HMAC-SHA256) or `v1a` (ed25519).
    pub signature_scheme: String,
    /// The `whpk_` key that verifies a `v1a` endpoint's signatures.
    pub public_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub health: EndpointHealth,
    /// The delivery objective and how its error budget stands; null without one.
    pub slo: Option<SloView>,
}

/// An endpoint's objective (`success_rate` over `window_days`) and, once evaluated, its
/// error budget (Herald's own `herald.…` events left out).
#[derive(Debug, Serialize, ToSchema)]
pub struct SloView {
    pub success_rate: f64,
    pub window_days: u32,
    /// Null until the objective has been evaluated (every `HERALD_SLO_EVALUATION_MS`).
    pub status: Option<SloStatus>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SloStatus {
    pub evaluated_at: DateTime<Utc>,
    /// Attempts and failed attempts over the objective's window.
    pub attempts: i64,
    pub failures: i64,
    /// The share of the error budget still unspent: 1 untouched, 0 spent, negative beyond.
    pub budget_remaining: f64,
    /// Failure rate over each window divided by what the objective allows (1 spends the
    /// budget exactly over the objective's window).
    pub burn_rate_5m: f64,
    pub burn_rate_30m: f64,
    pub burn_rate_1h: f64,
    pub burn_rate_6h: f64,
    /// The burn-rate alert firing now: `fast` (1 h and 5 min at 14.4×), `slow` (6 h and
    /// 30 min at 6×), or null.
    #[schema(pattern = "^(fast|slow)$")]
    pub alert: Option<String>,
    pub alert_since: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct SloStatusRow {
    endpoint_id: Uuid,
    #[sqlx(flatten)]
    status: SloStatus,
}

/// Objective status of the tenant's endpoints (one, or all when `endpoint_id` is None).
async fn slo_status_of(
    pool: &sqlx::PgPool,
    tenant_id: herald_schemas::TenantId,
    endpoint_id: Option<Uuid>,
) -> Result<HashMap<Uuid, SloStatus>, sqlx::Error> {
    let rows: Vec<SloStatusRow> = sqlx::query_as(
        "SELECT endpoint_id, evaluated_at, attempts, failures, budget_remaining, burn_rate_5m,          burn_rate_30m, burn_rate_1h, burn_rate_6h, alert, alert_since          FROM endpoint_slo_status WHERE tenant_id = $1 AND ($2::uuid IS NULL OR endpoint_id = $2)",
    )
    .bind(tenant_id.as_uuid())
    .bind(endpoint_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.endpoint_id, row.status))
        .collect())
}

/// How the endpoint's receiver is doing, from its attempts that made a request (an attempt
/// that ended unsent says nothing about the receiver) and its breaker's changes. Projected
/// from the log like the attempt history, so it trails it by the projection lag.
#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct EndpointHealth {
    /// `closed` (delivering), `open` (deliveries wait until `breaker_open_until`) or
    /// `half_open` (the next attempt is a probe that closes or reopens it).
    #[schema(pattern = "^(closed|open|half_open)$")]
    pub breaker_state: String,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Error class of the latest failed attempt (`http_5xx`, `timeout`, …).
    pub last_failure_class: Option<String>,
    /// Consecutive successful attempts up to the latest one.
    pub success_streak: i32,
    /// Consecutive failed attempts up to the latest one.
    pub failure_streak: i32,
}

#[derive(sqlx::FromRow)]
struct HealthRow {
    endpoint_id: Uuid,
    #[sqlx(flatten)]
    health: EndpointHealth,
}

/// Health of the tenant's endpoints (one, or all when `endpoint_id` is None).
async fn health_of(
    pool: &sqlx::PgPool,
    tenant_id: herald_schemas::TenantId,
    endpoint_id: Option<Uuid>,
) -> Result<HashMap<Uuid, EndpointHealth>, sqlx::Error> {
    let rows: Vec<HealthRow> = sqlx::query_as(
        "SELECT endpoint_id, breaker_state, breaker_open_until, last_attempt_at, last_success_at, \
         last_failure_at, last_failure_class, success_streak, failure_streak \
         FROM endpoint_health_view WHERE tenant_id = $1 AND ($2::uuid IS NULL OR endpoint_id = $2)",
    )
    .bind(tenant_id.as_uuid())
    .bind(endpoint_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.endpoint_id, row.health))
        .collect())
}

fn view(
    endpoint: EndpointRecord,
    health: &mut HashMap<Uuid, EndpointHealth>,
    slo_status: &mut HashMap<Uuid, SloStatus>,
) -> EndpointView {
    let endpoint_id = endpoint.endpoint_id.as_uuid();
    let health = health
        .remove(&endpoint_id)
        .unwrap_or_else(|| EndpointHealth {
            breaker_state: "closed".to_owned(),
            ..EndpointHealth::default()
        });
    let slo = endpoint.slo.as_ref().map(|objective| SloView {
        success_rate: objective.0.success_rate,
        window_days: objective.0.window_days,
        status: slo_status.remove(&endpoint_id),
    });
    let mut view = EndpointView::from_parts(endpoint, health);
    view.slo = slo;
    view
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
}

impl EndpointView {
    fn from_parts(endpoint: EndpointRecord, health: EndpointHealth) -> Self {
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
            header_names: endpoint.header_names,
            signature_scheme: endpoint.signature_scheme,
            public_key: endpoint.public_key,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
            health,
            slo: None,
        }
    }
}

#[utoipa::path(
    get, path = "/v1/webhook_endpoints", tag = "endpoints",
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn list_endpoints(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
) -> Result<Json<EndpointList>, ApiError> {
    let (records, mut health, mut slo_status) = futures::try_join!(
        endpoints::list_for_tenant(&state.pool, tenant_id),
        health_of(&state.pool, tenant_id, None),
        slo_status_of(&state.pool, tenant_id, None)
    )?;
    let data = records
        .into_iter()
        .map(|endpoint| view(endpoint, &mut health, &mut slo_status))
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
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn get_endpoint(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint_id = EndpointId(parse_uuid("endpoint_id", &endpoint_id)?);
    let (record, mut health, mut slo_status) = futures::try_join!(
        endpoints::get_for_tenant(&state.pool, tenant_id, endpoint_id),
        health_of(&state.pool, tenant_id, Some(endpoint_id.as_uuid())),
        slo_status_of(&state.pool, tenant_id, Some(endpoint_id.as_uuid()))
    )?;
    record
        .map(|endpoint| Json(view(endpoint, &mut health, &mut slo_status)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "endpoint {endpoint_id} does not exist for this tenant"
            ))
        })
}
