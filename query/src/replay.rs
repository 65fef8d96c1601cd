//! `POST /v1/events/{event_id}/replay`: make an event's deliveries again (all of them, or the
//! one to `endpoint_id`), e.g. after they were dead-lettered. The request is appended to the
//! log as `delivery.replay_requested.v1`; delivery schedules the attempts. Rate-limited per
//! tenant.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use herald_http::{ApiError, Caller};
use herald_schemas::{EndpointId, EventId, LogMessage, ReplayRequested, ReplayedDelivery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Replay requests (single or bulk) allowed per tenant: 10 a second, bursts of 20.
const REPLAYS_PER_SECOND: f64 = 10.0;
const REPLAY_BURST: u32 = 20;

/// Counts one replay request against the tenant's allowance, or says when to come back.
pub(crate) fn take_replay_allowance(
    state: &QueryState,
    tenant_id: herald_schemas::TenantId,
) -> Result<(), ApiError> {
    state
        .replay_limit
        .take(&tenant_id, REPLAYS_PER_SECOND, REPLAY_BURST)
        .map_err(|retry_after| ApiError::RateLimited {
            retry_after,
            what: "replays for this tenant".to_owned(),
        })
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay only the delivery to this endpoint.
    pub endpoint_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAccepted {
    pub event_id: Uuid,
    /// The endpoints whose delivery will be attempted again.
    pub endpoint_ids: Vec<Uuid>,
}

#[utoipa::path(
    post, path = "/v1/events/{event_id}/replay", tag = "events",
    params(("event_id" = Uuid, Path)),
    request_body(content = Option<ReplayRequest>, description = "Optional; no body replays every delivery"),
    responses(
        (status = 202, description = "Appended to the log; attempts follow within about a second", body = ReplayAccepted),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many replays for this tenant; see Retry-After", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn replay_event(
    State(state): State<QueryState>,
    caller: Caller,
    Path(event_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ReplayAccepted>), ApiError> {
    let tenant_id = caller.tenant_id;
    let event_id = parse_uuid("event_id", &event_id)?;
    caller.may_replay()?;
    let request: ReplayRequest = herald_http::json_body::parse_optional(&body)?;
    take_replay_allowance(&state, tenant_id)?;
    let not_found =
        || ApiError::NotFound(format!("event {event_id} does not exist for this tenant"));
    let event_sequence: i64 = sqlx::query_scalar(
        "SELECT log_sequence FROM events WHERE event_id = $1 AND tenant_id = $2",
    )
    .bind(event_id)
    .bind(tenant_id.as_uuid())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(not_found)?;
    let deliveries: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT endpoint_id, attempt_count FROM deliveries WHERE event_id = $1 \
         AND ($2::uuid IS NULL OR endpoint_id = $2) ORDER BY endpoint_id",
    )
    .bind(event_id)
    .bind(request.endpoint_id)
    .fetch_all(&state.pool)
    .await?;
    if deliveries.is_empty() {
        return Err(match request.endpoint_id {
            Some(endpoint_id) => ApiError::NotFound(format!(
                "event {event_id} has no delivery to endpoint {endpoint_id}"
            )),
            None => ApiError::NotFound(format!("event {event_id} has no deliveries to replay")),
        });
    }
    let message = LogMessage::ReplayRequested(ReplayRequested {
        event_id: EventId(event_id),
        tenant_id,
        event_sequence: event_sequence as u64,
        deliveries: deliveries
            .iter()
            .map(|&(endpoint_id, attempts)| ReplayedDelivery {
                endpoint_id: EndpointId(endpoint_id),
                attempt_number: attempts.max(0) as u32 + 1,
            })
            .collect(),
        requested_at: Utc::now(),
    });
    let subject = state.publisher.namespace().replay_subject(tenant_id);
    state
        .publisher
        .publish(subject, &message)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "replay not appended");
            ApiError::Unavailable(
                "the event log is unavailable; nothing was replayed, retry later".to_owned(),
            )
        })?;
    tracing::info!(%tenant_id, %event_id, deliveries = deliveries.len(), "replay requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            event_id,
            endpoint_ids: deliveries
                .into_iter()
                .map(|(endpoint_id, _)| endpoint_id)
                .collect(),
        }),
    ))
}
