//! `GET /v1/events/{event_id}/explain`: for each endpoint of the tenant, whether the event
//! was routed to it and, if not, why; for the routed ones, what the delivery waits for now.
//!
//! Everything comes from the read models, so the hot path pays nothing: routing is decided at
//! ingest and the event records the `target_endpoints` it named and its schedule; a
//! delivery records why its next attempt was put off (`delivery.deferred.v1`); the breaker
//! is in `endpoint_health`. What is not recorded is said to be inferred: an endpoint's
//! configuration at acceptance is known only if it has not changed since.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, Caller};
use herald_schemas::DeliveryStatus;
use herald_store::endpoints::{self, EndpointRecord};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventExplanation {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub accepted_at: DateTime<Utc>,
    /// Every endpoint of the tenant, and any the event was routed to that no longer exists.
    pub endpoints: Vec<EndpointExplanation>,
}

#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct EndpointExplanation {
    pub endpoint_id: Uuid,
    /// Null for an endpoint that no longer exists.
    pub url: Option<String>,
    /// The event was routed to this endpoint at acceptance: it has a delivery.
    pub routed: bool,
    /// Why it was not routed: `created_later`, `not_targeted` (the event named other
    /// `target_endpoints`), `type_filter`, `disabled`, `changed_since` (the endpoint would
    /// receive it now; its configuration changed after the event), `routing_cache` (made or
    /// changed just before the event, within the routing cache time) or `unknown`.
    #[schema(
        pattern = "^(created_later|not_targeted|type_filter|disabled|changed_since|routing_cache|unknown)$"
    )]
    pub reason: Option<String>,
    /// The explanation, in a sentence.
    pub detail: String,
    /// The delivery's status, when routed.
    pub delivery_status: Option<String>,
    /// What the delivery waits for now, when routed.
    pub waiting_for: Option<WaitingFor>,
}

#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct WaitingFor {
    /// `nothing` (the delivery is over), `scheduled` (the event's `deliver_after`),
    /// `ordered_lane` (an earlier event to this ordered endpoint goes first), `rate_limited`,
    /// `breaker_open`, `retry_budget`, `endpoint_busy`, `retry` (the next attempt after a
    /// failure), `endpoint_disabled` (it will end unsent) or `in_flight` (due: being
    /// attempted, or queued for it).
    #[schema(
        pattern = "^(nothing|scheduled|ordered_lane|rate_limited|breaker_open|retry_budget|endpoint_busy|retry|endpoint_disabled|in_flight)$"
    )]
    pub kind: String,
    /// When that wait ends, where known.
    pub until: Option<DateTime<Utc>>,
    pub detail: String,
}

/// What the read models say about the event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventFacts {
    pub event_id: Uuid,
    pub event_type: String,
    pub accepted_at: DateTime<Utc>,
    pub log_sequence: i64,
    pub target_endpoints: Option<Vec<Uuid>>,
    pub deliver_after: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the read models say about one delivery of the event.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct DeliveryFacts {
    pub endpoint_id: Uuid,
    pub status: String,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_http_status: Option<i32>,
    pub last_error_code: Option<String>,
    pub deferral_reason: Option<String>,
}

/// An ordered endpoint's earlier delivery that is not over yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LaneAhead {
    pub event_id: Uuid,
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The endpoint's state that bears on a delivery now.
#[derive(Debug, Clone, Default)]
pub struct EndpointNow {
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub lane_ahead: Option<LaneAhead>,
}

/// How long the command service may route with a tenant's endpoints as they were
/// (`HERALD_ROUTING_CACHE_TTL_MS`, default 30 s, when the change notice is late).
const ROUTING_CACHE: chrono::Duration = chrono::Duration::seconds(30);

/// Why an endpoint without a delivery of the event got none.
pub fn not_routed(event: &EventFacts, endpoint: &EndpointRecord) -> (&'static str, String) {
    let accepted = event.accepted_at;
    if endpoint.created_at > accepted {
        return (
            "created_later",
            format!(
                "the endpoint was created at {}, after the event was accepted at {accepted}",
                endpoint.created_at
            ),
        );
    }
    let endpoint_id = endpoint.endpoint_id.as_uuid();
    if let Some(targets) = &event.target_endpoints {
        if !targets.contains(&endpoint_id) {
            return (
                "not_targeted",
                format!(
                    "the event named {} endpoint(s) in target_endpoints, not this one",
                    targets.len()
                ),
            );
        }
    }
    let changed_since = endpoint.updated_at > accepted;
    let as_of = if changed_since {
        format!(
            " (as configured now: it changed at {}, after the event)",
            endpoint.updated_at
        )
    } else {
        String::new()
    };
    if !herald_rules::routing::subscribes(endpoint.event_types.as_deref(), &event.event_type) {
        return (
            "type_filter",
            format!(
                "the endpoint subscribes to {} but not to `{}`{as_of}",
                endpoint
                    .event_types
                    .as_ref()
                    .map(|types| format!("{} other type(s)", types.len()))
                    .unwrap_or_default(),
                event.event_type
            ),
        );
    }
    if !endpoint.enabled {
        let why = endpoint
            .disabled_reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        return ("disabled", format!("the endpoint is disabled{why}{as_of}"));
    }
    if changed_since {
        return (
            "changed_since",
            format!(
                "the endpoint would receive this event now; its configuration changed at {}, \
                 after the event was accepted",
                endpoint.updated_at
            ),
        );
    }
    if accepted - endpoint.created_at < ROUTING_CACHE {
        return (
            "routing_cache",
            "the endpoint was created moments before the event; the ingest process routed \
             with its cached endpoint list, which had not seen it yet"
                .to_owned(),
        );
    }
    (
        "unknown",
        "the endpoint receives this type and was enabled; nothing recorded explains why the \
         event did not reach it"
            .to_owned(),
    )
}

/// What a routed delivery waits for now.
pub fn waiting_for(
    event: &EventFacts,
    delivery: &DeliveryFacts,
    endpoint: Option<&EndpointRecord>,
    endpoint_now: &EndpointNow,
    now: DateTime<Utc>,
) -> WaitingFor {
    let wait = |kind: &str, until: Option<DateTime<Utc>>, detail: String| WaitingFor {
        kind: kind.to_owned(),
        until,
        detail,
    };
    let status = delivery.status.parse::<DeliveryStatus>().ok();
    if let Some(status) = status.filter(|status| !DeliveryStatus::UNFINISHED.contains(status)) {
        let how = match (
            delivery.last_http_status,
            delivery.last_error_code.as_deref(),
        ) {
            (Some(code), _) => format!(" (last answer: HTTP {code})"),
            (None, Some(error)) => format!(" (last error: {error})"),
            (None, None) => String::new(),
        };
        return wait(
            "nothing",
            None,
            format!(
                "the delivery is over: {} after {} attempt(s){how}",
                status.as_str(),
                delivery.attempt_count
            ),
        );
    }
    let expiry = event
        .expires_at
        .map(|at| {
            format!(
                "; the event expires at {at}, and is recorded as expired if not delivered by then"
            )
        })
        .unwrap_or_default();
    let Some(endpoint) = endpoint else {
        return wait(
            "endpoint_disabled",
            None,
            "the endpoint no longer exists: the delivery ends unsent at its next attempt"
                .to_owned(),
        );
    };
    if !endpoint.enabled {
        return wait(
            "endpoint_disabled",
            None,
            format!(
                "the endpoint is disabled{}: the delivery ends unsent at its next attempt",
                endpoint
                    .disabled_reason
                    .as_deref()
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(after) = event.deliver_after.filter(|after| *after > now) {
        if delivery.attempt_count == 0 {
            return wait(
                "scheduled",
                Some(after),
                format!("the event is scheduled: no attempt before {after}{expiry}"),
            );
        }
    }
    if let Some(ahead) = &endpoint_now.lane_ahead {
        return wait(
            "ordered_lane",
            ahead.next_attempt_at,
            format!(
                "the endpoint takes events in order and event {} ({}) goes first{expiry}",
                ahead.event_id, ahead.status
            ),
        );
    }
    let next = delivery.next_attempt_at.filter(|next| *next > now);
    if let (Some(reason), Some(until)) = (delivery.deferral_reason.as_deref(), next) {
        let (kind, why) = match reason {
            "rate_limited" => (
                "rate_limited",
                "the endpoint's rate limit allows no request before then",
            ),
            "circuit_open" => ("breaker_open", "the endpoint's circuit breaker is open"),
            "retry_budget" => (
                "retry_budget",
                "the retry budget is spent; retries wait for it to refill",
            ),
            "endpoint_busy" => (
                "endpoint_busy",
                "the endpoint has as many requests in flight as it may",
            ),
            _ => ("in_flight", "the attempt was put off"),
        };
        return wait(
            kind,
            Some(until),
            format!(
                "{why}: attempt {} is due at {until}{expiry}",
                delivery.attempt_count + 1
            ),
        );
    }
    if let Some(until) = endpoint_now.breaker_open_until.filter(|until| *until > now) {
        return wait(
            "breaker_open",
            Some(until),
            format!("the endpoint's circuit breaker is open until {until}{expiry}"),
        );
    }
    if let Some(until) = next.filter(|_| delivery.attempt_count > 0) {
        return wait(
            "retry",
            Some(until),
            format!(
                "attempt {} failed{}; attempt {} is due at {until}{expiry}",
                delivery.attempt_count,
                delivery
                    .last_http_status
                    .map(|code| format!(" with HTTP {code}"))
                    .or_else(|| delivery
                        .last_error_code
                        .as_deref()
                        .map(|code| format!(" ({code})")))
                    .unwrap_or_default(),
                delivery.attempt_count + 1
            ),
        );
    }
    let due = delivery.next_attempt_at.unwrap_or(event.accepted_at);
    wait(
        "in_flight",
        None,
        format!(
            "attempt {} is due (since {due}): being made, or queued for a worker{}{expiry}",
            delivery.attempt_count + 1,
            endpoint
                .rate_limit
                .as_ref()
                .and_then(|limit| limit.0.get("per_second"))
                .map(|rate| format!(
                    "; the endpoint is rate limited to {rate}/s, so a backlog drains at that pace"
                ))
                .unwrap_or_default()
        ),
    )
}

#[utoipa::path(
    get, path = "/v1/events/{event_id}/explain", tag = "events",
    params(("event_id" = Uuid, Path)),
    responses(
        (status = 200, body = EventExplanation),
        (status = 404, description = "No such event for this tenant (or not projected yet)", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn explain_event(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    Path(event_id): Path<String>,
) -> Result<Json<EventExplanation>, ApiError> {
    let event_id = parse_uuid("event_id", &event_id)?;
    let event: EventFacts = sqlx::query_as(
        "SELECT event_id, event_type, accepted_at, log_sequence, target_endpoints, deliver_after, \
         expires_at FROM events WHERE event_id = $1 AND tenant_id = $2",
    )
    .bind(event_id)
    .bind(tenant_id.as_uuid())
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| {
        ApiError::NotFound(format!("event {event_id} does not exist for this tenant"))
    })?;
    let (endpoint_records, deliveries, breakers) = futures::try_join!(
        endpoints::list_for_tenant(&state.pool, tenant_id),
        sqlx::query_as::<_, DeliveryFacts>(
            "SELECT endpoint_id, status, attempt_count, next_attempt_at, last_http_status, \
             last_error_code, deferral_reason FROM deliveries WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_all(&state.pool),
        sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(
            "SELECT endpoint_id, breaker_open_until FROM endpoint_health \
             WHERE tenant_id = $1 AND breaker_open AND breaker_open_until > now()",
        )
        .bind(tenant_id.as_uuid())
        .fetch_all(&state.pool),
    )?;
    let breakers: HashMap<Uuid, DateTime<Utc>> = breakers.into_iter().collect();
    let mut deliveries: HashMap<Uuid, DeliveryFacts> = deliveries
        .into_iter()
        .map(|delivery| (delivery.endpoint_id, delivery))
        .collect();
    let now = Utc::now();
    let mut explained = Vec::with_capacity(endpoint_records.len());
    for endpoint in &endpoint_records {
        let endpoint_id = endpoint.endpoint_id.as_uuid();
        let explanation = match deliveries.remove(&endpoint_id) {
            Some(delivery) => {
                let endpoint_now = EndpointNow {
                    breaker_open_until: breakers.get(&endpoint_id).copied(),
                    lane_ahead: lane_ahead(&state, endpoint, &event, &delivery).await?,
                };
                routed(&event, &delivery, Some(endpoint), &endpoint_now, now)
            }
            None => {
                let (reason, detail) = not_routed(&event, endpoint);
                EndpointExplanation {
                    endpoint_id,
                    url: Some(endpoint.url.clone()),
                    routed: false,
                    reason: Some(reason.to_owned()),
                    detail,
                    delivery_status: None,
                    waiting_for: None,
                }
            }
        };
        explained.push(explanation);
    }
    // Deliveries to endpoints that no longer exist.
    let mut gone: Vec<DeliveryFacts> = deliveries.into_values().collect();
    gone.sort_by_key(|delivery| delivery.endpoint_id);
    for delivery in gone {
        explained.push(routed(
            &event,
            &delivery,
            None,
            &EndpointNow::default(),
            now,
        ));
    }
    Ok(Json(EventExplanation {
        event_id: event.event_id,
        event_type: event.event_type,
        accepted_at: event.accepted_at,
        endpoints: explained,
    }))
}

fn routed(
    event: &EventFacts,
    delivery: &DeliveryFacts,
    endpoint: Option<&EndpointRecord>,
    endpoint_now: &EndpointNow,
    now: DateTime<Utc>,
) -> EndpointExplanation {
    EndpointExplanation {
        endpoint_id: delivery.endpoint_id,
        url: endpoint.map(|endpoint| endpoint.url.clone()),
        routed: true,
        reason: None,
        detail: "routed when the event was accepted".to_owned(),
        delivery_status: Some(delivery.status.clone()),
        waiting_for: Some(waiting_for(event, delivery, endpoint, endpoint_now, now)),
    }
}

/// For an unfinished delivery to an ordered endpoint: the earliest earlier delivery there
/// that is not over (the lane delivers one at a time in log order).
async fn lane_ahead(
    state: &QueryState,
    endpoint: &EndpointRecord,
    event: &EventFacts,
    delivery: &DeliveryFacts,
) -> Result<Option<LaneAhead>, ApiError> {
    let unfinished = delivery
        .status
        .parse::<DeliveryStatus>()
        .is_ok_and(|status| DeliveryStatus::UNFINISHED.contains(&status));
    if !endpoint.ordered || !unfinished {
        return Ok(None);
    }
    let unfinished: Vec<&str> = DeliveryStatus::UNFINISHED
        .iter()
        .map(|status| status.as_str())
        .collect();
    Ok(sqlx::query_as(
        "SELECT d.event_id, d.status, d.next_attempt_at FROM deliveries d \
         JOIN events e ON e.event_id = d.event_id \
         WHERE d.endpoint_id = $1 AND d.status = ANY($2) AND e.log_sequence < $3 \
         ORDER BY e.log_sequence LIMIT 1",
    )
    .bind(endpoint.endpoint_id.as_uuid())
    .bind(&unfinished)
    .bind(event.log_sequence)
    .fetch_optional(&state.pool)
    .await?)
}

#[cfg(test)]
mod tests;
