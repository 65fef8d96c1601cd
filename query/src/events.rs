//! `GET /v1/events/{event_id}`: an event, its status and its per-endpoint deliveries.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, Caller};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload exactly as it was submitted.
    #[schema(value_type = herald_http::field_schemas::EventPayload)]
    pub payload: Box<serde_json::value::RawValue>,
    /// `pending` (no attempt yet), `delivering`, `delivered` (every delivery succeeded) or
    /// `failed` (every delivery is over and at least one did not succeed).
    pub status: String,
    pub accepted_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub trace_id: String,
    pub deliveries: Vec<DeliveryView>,
}

/// The event as it goes to one endpoint.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryView {
    pub endpoint_id: Uuid,
    /// `pending`, `retrying`, `succeeded`, `failed`, `dead_lettered` or `expired`.
    pub status: String,
    pub attempt_count: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_http_status: Option<i32>,
    pub last_error_code: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: Uuid,
    event_type: String,
    payload: sqlx::types::Json<Box<serde_json::value::RawValue>>,
    status: String,
    accepted_at: DateTime<Utc>,
    idempotency_key: Option<String>,
    trace_id: String,
}

#[utoipa::path(
    get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = Uuid, Path, description = "The id returned when the event was accepted")),
    responses(
        (status = 200, body = EventView),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such event for this tenant (or not projected yet: they appear within milliseconds)", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn get_event(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    Path(event_id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let event_id = parse_uuid("event_id", &event_id)?;
    let not_found =
        || ApiError::NotFound(format!("event {event_id} does not exist for this tenant"));
    let row: EventRow = sqlx::query_as(
        "SELECT event_id, event_type, payload, status, accepted_at, idempotency_key, trace_id \
         FROM events WHERE event_id = $1 AND tenant_id = $2",
    )
    .bind(event_id)
    .bind(tenant_id.as_uuid())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(not_found)?;
    let deliveries: Vec<DeliveryView> = sqlx::query_as(
        "SELECT endpoint_id, status, attempt_count, last_attempt_at, next_attempt_at, last_http_status, last_error_code \
         FROM deliveries WHERE event_id = $1 ORDER BY endpoint_id",
    )
    .bind(event_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(EventView {
        event_id: row.event_id,
        event_type: row.event_type,
        payload: row.payload.0,
        status: row.status,
        accepted_at: row.accepted_at,
        idempotency_key: row.idempotency_key,
        trace_id: row.trace_id,
        deliveries,
    }))
}
