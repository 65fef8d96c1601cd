//! `POST /v1/deliveries/replay`: make again every delivery that matches a filter (endpoint,
//! status, acceptance time range), e.g. everything dead-lettered while a receiver was down.
//! Each matching event becomes one `delivery.replay_requested.v1` in the log, exactly as a
//! single-event replay; the delivery service's retry budget paces the attempts. A request
//! covers at most `limit` events, oldest first; `next_cursor` continues where it stopped.

use crate::params::Cursor;
use crate::replay::take_replay_allowance;
use crate::state::QueryState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use herald_http::field_schemas::PageCursor;
use herald_http::{ApiError, ApiJson, Caller};
use herald_schemas::{
    DeliveryStatus, EndpointId, EventId, LogMessage, ReplayRequested, ReplayedDelivery,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

fn parse_replayable(index: usize, status: &str) -> Result<DeliveryStatus, ApiError> {
    status
        .parse()
        .ok()
        .filter(|status| REPLAYABLE.contains(status))
        .ok_or_else(|| {
            ApiError::invalid(
                format!("status[{index}]"),
                format!(
                    "must be one of {}; pending and retrying deliveries are still being made",
                    REPLAYABLE.map(DeliveryStatus::as_str).join(", ")
                ),
            )
        })
}

/// Statuses a delivery can be replayed from: final ones. A pending or retrying delivery is
/// still being made, and a replay would race it. (In the order error messages list them.)
const REPLAYABLE: [DeliveryStatus; 4] = [
    DeliveryStatus::Failed,
    DeliveryStatus::DeadLettered,
    DeliveryStatus::Expired,
    DeliveryStatus::Succeeded,
];
/// A status deliveries can be replayed from, for the document.
pub struct ReplayableStatus;

impl PartialSchema for ReplayableStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(REPLAYABLE.map(DeliveryStatus::as_str)))
            .description(Some("A final delivery status"))
            .into()
    }
}

impl ToSchema for ReplayableStatus {}

const DEFAULT_STATUSES: [DeliveryStatus; 3] = [
    DeliveryStatus::Failed,
    DeliveryStatus::DeadLettered,
    DeliveryStatus::Expired,
];
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayRequest {
    /// Only deliveries to this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// Delivery statuses to replay: any of `failed`, `dead_lettered`, `expired`, `succeeded`.
    /// Defaults to the three unsuccessful ones.
    #[schema(value_type = Option<Vec<ReplayableStatus>>, min_items = 1)]
    pub status: Option<Vec<String>>,
    /// Only events accepted at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events accepted before this time; at or before `since` matches none.
    pub until: Option<DateTime<Utc>>,
    /// Events to replay in this request, oldest first (default 100).
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous response, to continue after its last event.
    #[schema(value_type = Option<PageCursor>)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReplayAccepted {
    /// Events whose matching deliveries will be attempted again.
    pub events: usize,
    /// Deliveries that will be attempted again.
    pub deliveries: usize,
    /// Present when more events match: send the same filter with this `cursor`.
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
struct MatchedDelivery {
    event_id: Uuid,
    accepted_at: DateTime<Utc>,
    log_sequence: i64,
    endpoint_id: Uuid,
    attempt_count: i32,
}

#[utoipa::path(
    post, path = "/v1/deliveries/replay", tag = "deliveries",
    request_body = BulkReplayRequest,
    responses(
        (status = 202, description = "Appended to the log; attempts follow, paced by the retry budget", body = BulkReplayAccepted),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many replays for this tenant; see Retry-After", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn replay_deliveries(
    State(state): State<QueryState>,
    caller: Caller,
    ApiJson(request): ApiJson<BulkReplayRequest>,
) -> Result<(StatusCode, Json<BulkReplayAccepted>), ApiError> {
    let tenant_id = caller.tenant_id;
    caller.may_replay()?;
    let statuses: Vec<DeliveryStatus> = match request.status {
        None => DEFAULT_STATUSES.to_vec(),
        Some(statuses) if statuses.is_empty() => {
            return Err(ApiError::invalid(
                "status",
                "must list at least one status, or be left out",
            ))
        }
        Some(statuses) => statuses
            .iter()
            .enumerate()
            .map(|(index, status)| parse_replayable(index, status))
            .collect::<Result<_, _>>()?,
    };
    let statuses: Vec<&str> = statuses.into_iter().map(DeliveryStatus::as_str).collect();
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1-{MAX_LIMIT}")));
    }
    let cursor = request.cursor.as_deref().map(Cursor::decode).transpose()?;
    take_replay_allowance(&state, tenant_id)?;

    // Events first (so a page never splits an event's deliveries), then their deliveries.
    let matched: Vec<MatchedDelivery> = sqlx::query_as(
        "WITH matched AS ( \
           SELECT e.event_id, e.accepted_at, e.log_sequence FROM events e \
           WHERE e.tenant_id = $1 \
             AND ($3::timestamptz IS NULL OR e.accepted_at >= $3) \
             AND ($4::timestamptz IS NULL OR e.accepted_at < $4) \
             AND ($5::timestamptz IS NULL OR (e.accepted_at, e.event_id) > ($5, $6)) \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.event_id \
               AND d.status = ANY($7) AND ($2::uuid IS NULL OR d.endpoint_id = $2)) \
           ORDER BY e.accepted_at, e.event_id LIMIT $8) \
         SELECT m.event_id, m.accepted_at, m.log_sequence, d.endpoint_id, d.attempt_count \
         FROM matched m JOIN deliveries d ON d.event_id = m.event_id \
         WHERE d.status = ANY($7) AND ($2::uuid IS NULL OR d.endpoint_id = $2) \
         ORDER BY m.accepted_at, m.event_id, d.endpoint_id",
    )
    .bind(tenant_id.as_uuid())
    .bind(request.endpoint_id)
    .bind(request.since)
    .bind(request.until)
    .bind(cursor.map(|cursor| cursor.at))
    .bind(cursor.map(|cursor| cursor.id))
    .bind(&statuses)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;

    let mut requests: Vec<ReplayRequested> = Vec::new();
    let mut accepted_at: Vec<DateTime<Utc>> = Vec::new();
    for row in matched {
        if requests.last().map(|replay| replay.event_id.as_uuid()) != Some(row.event_id) {
            requests.push(ReplayRequested {
                event_id: EventId(row.event_id),
                tenant_id,
                event_sequence: row.log_sequence as u64,
                deliveries: Vec::new(),
                requested_at: Utc::now(),
            });
            accepted_at.push(row.accepted_at);
        }
        if let Some(replay) = requests.last_mut() {
            replay.deliveries.push(ReplayedDelivery {
                endpoint_id: EndpointId(row.endpoint_id),
                attempt_number: row.attempt_count.max(0) as u32 + 1,
            });
        }
    }
    let next_cursor = if requests.len() > limit as usize {
        requests.truncate(limit as usize);
        let last = requests.len() - 1;
        Some(
            Cursor {
                at: accepted_at[last],
                id: requests[last].event_id.as_uuid(),
            }
            .encode(),
        )
    } else {
        None
    };
    let deliveries = requests.iter().map(|replay| replay.deliveries.len()).sum();
    let events = requests.len();
    let subject = state.publisher.namespace().replay_subject(tenant_id);
    // Pipelined: up to 64 appends awaiting their acknowledgement at once.
    futures::stream::iter(requests)
        .map(|replay| {
            let subject = subject.clone();
            let publisher = state.publisher.clone();
            async move {
                publisher
                    .publish(subject, &LogMessage::ReplayRequested(replay))
                    .await
            }
        })
        .buffered(64)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|error| {
            tracing::warn!(%error, "bulk replay not fully appended");
            ApiError::Unavailable(
                "the event log is unavailable; part of the replay may have been appended, \
                 retry later (replaying twice sends the deliveries twice)"
                    .to_owned(),
            )
        })?;
    tracing::info!(%tenant_id, events, deliveries, "bulk replay requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(BulkReplayAccepted {
            events,
            deliveries,
            next_cursor,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_deliveries_are_replayed() {
        for status in DeliveryStatus::ALL {
            assert_eq!(REPLAYABLE.contains(&status), status.is_final(), "{status}");
        }
        assert!(DEFAULT_STATUSES
            .iter()
            .all(|status| REPLAYABLE.contains(status) && *status != DeliveryStatus::Succeeded));
        assert_eq!(
            parse_replayable(0, "dead_lettered").expect("replayable"),
            DeliveryStatus::DeadLettered
        );
        for refused in ["retrying", "pending", "delivered", ""] {
            let error = parse_replayable(2, refused).expect_err("not replayable");
            assert!(
                matches!(&error, ApiError::InvalidField { field, message } if field == "status[2]"
                    && message == "must be one of failed, dead_lettered, expired, succeeded; \
                        pending and retrying deliveries are still being made"),
                "{error:?}"
            );
        }
    }
}
