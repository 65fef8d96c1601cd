//! `POST /v1/events`: validate, route, append `event.accepted.v1` to the log, answer 202 once
//! the log has acknowledged it.

use crate::field_schemas::{IdempotencyKey, IdempotencyKeyHeader};
use crate::idempotency::{Claim, RequestFingerprint};
use crate::state::CommandState;
use crate::validation;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::{EventPayload, EventTypeName};
use herald_http::trace_context::{self, TraceParent};
use herald_http::{ApiError, ApiJson, AuthenticatedTenant};
use herald_schemas::{EndpointId, EventAccepted, EventId, LogMessage, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Instant;
use tracing::field::{display, Empty};
use tracing::{Instrument, Span};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// The event type endpoints subscribe to, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    #[schema(value_type = EventTypeName)]
    pub event_type: String,
    #[schema(value_type = EventPayload)]
    pub payload: Box<RawValue>,
    /// Same as the `Idempotency-Key` header.
    #[schema(value_type = Option<IdempotencyKey>)]
    pub idempotency_key: Option<String>,
    /// Deliver only to these of the tenant's endpoints (their type filters still apply).
    pub target_endpoints: Option<Vec<uuid::Uuid>>,
    /// No attempt before this time (RFC 3339; at most 30 days ahead). A time already past
    /// means at once.
    pub deliver_after: Option<DateTime<Utc>>,
    /// No attempt after this time (RFC 3339): deliveries not done by then are recorded as
    /// `expired`. A time already past (or not after `deliver_after`) is accepted: the event
    /// is recorded and its deliveries expire without an attempt.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventAcceptedResponse {
    pub event_id: uuid::Uuid,
}

#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body = CreateEvent,
    params(("Idempotency-Key" = Option<IdempotencyKeyHeader>, Header, description = "Repeat-safe key, kept at least 24 h; equal to `idempotency_key` when both are sent")),
    responses(
        (status = 202, description = "Durably appended to the log", body = EventAcceptedResponse),
        (status = 400, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "A `target_endpoints` entry names no endpoint of this tenant", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key used for a different request, or a `target_endpoints` entry names a disabled endpoint", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 413, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Over the tenant's ingest rate limit; `Retry-After` says when to try again", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_event(
    State(state): State<CommandState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateEvent>,
) -> Result<(StatusCode, Json<EventAcceptedResponse>), ApiError> {
    let event_id = EventId::generate();
    let caller = TraceParent::from_headers(&headers);
    // Only made when spans are exported: the request span already carries what logs need.
    let span = match trace_context::exporting() {
        true => tracing::info_span!(
            "ingest",
            otel.kind = "server",
            %tenant_id,
            event_id = Empty,
        ),
        false => Span::none(),
    };
    let exported_trace_id =
        trace_context::start_with_span_id(&span, caller, trace_context::ingest_span_id(event_id));
    let trace_id = match (caller, exported_trace_id) {
        (Some(caller), _) => caller.trace_id_hex(),
        (None, exported) => started_trace_id(exported),
    };
    let accepted = accept(state, tenant_id, request, &headers, event_id, trace_id)
        .instrument(span.clone())
        .await;
    let status = match &accepted {
        Ok((status, _)) => *status,
        Err(error) => error.status(),
    };
    let outcome = match &accepted {
        Ok(_) => "accepted",
        Err(_) => "refused",
    };
    trace_context::record_http_status(&span, status.as_u16());
    trace_context::record_outcome(&span, outcome, status.is_server_error());
    accepted
}

/// Validates, routes and appends the event, as `event_id` in trace `trace_id` (unless an
/// idempotency key names an earlier one).
async fn accept(
    state: CommandState,
    tenant_id: TenantId,
    request: CreateEvent,
    headers: &HeaderMap,
    mut event_id: EventId,
    trace_id: String,
) -> Result<(StatusCode, Json<EventAcceptedResponse>), ApiError> {
    let started = Instant::now();
    state.ingest_limits.admit(tenant_id).await?;
    validation::event_type(&request.event_type)
        .map_err(|error| ApiError::invalid("type", error.to_string()))?;
    if herald_schemas::operational::is_operational(&request.event_type) {
        return Err(ApiError::invalid(
            "type",
            "types starting with `herald.` are Herald's own operational events; choose another name",
        ));
    }
    if request.payload.get() == "null" {
        return Err(ApiError::invalid(
            "payload",
            "must be a JSON value other than null",
        ));
    }
    let idempotency_key = idempotency_key(headers, request.idempotency_key.as_deref())?;
    validate_schedule(&request, Utc::now())?;
    // Without a connection the append would wait out the client's 5 s timeout in its buffer
    // and fail anyway; say so at once, so that callers and their timeouts are not held.
    if !state.publisher.is_connected() {
        return Err(ApiError::Unavailable(
            "the event log is unreachable; retry shortly (with the same idempotency key)"
                .to_owned(),
        ));
    }
    let endpoint_ids = route(&state, tenant_id, &request).await?;

    if let Some(key) = idempotency_key.as_deref() {
        let fingerprint = RequestFingerprint::of(
            &request.event_type,
            &request.payload,
            &request.target_endpoints,
            &format!("{:?}/{:?}", request.deliver_after, request.expires_at),
        );
        match state
            .idempotency
            .claim(tenant_id, key, &fingerprint, event_id)
            .await?
        {
            Claim::Claimed => {}
            Claim::Repeated {
                event_id: original,
                appended: true,
            } => {
                Span::current().record("event_id", display(original));
                return Ok(accepted(original));
            }
            // The first request may have died before the log acknowledged its event: append
            // it again under the same id; the log keeps one copy.
            Claim::Repeated {
                event_id: original,
                appended: false,
            } => event_id = original,
            Claim::Conflict => {
                return Err(ApiError::Conflict(format!(
                "idempotency key `{key}` was already used for a different request; use a new key"
            )))
            }
        }
    }
    Span::current().record("event_id", display(event_id));

    let event = EventAccepted {
        event_id,
        tenant_id,
        event_type: request.event_type,
        payload: request.payload,
        idempotency_key: idempotency_key.clone(),
        accepted_at: Utc::now(),
        trace_id,
        endpoint_ids,
        target_endpoints: request
            .target_endpoints
            .map(|targets| targets.into_iter().map(EndpointId).collect()),
        deliver_after: request.deliver_after,
        expires_at: request.expires_at,
    };
    let subject = state.publisher.namespace().event_subject(tenant_id);
    let message = LogMessage::EventAccepted(event);
    let append_started = Instant::now();
    let appended = async {
        match idempotency_key {
            Some(_) => {
                state
                    .publisher
                    .publish_once(subject, &message, event_id.to_string())
                    .await
            }
            None => state.publisher.publish(subject, &message).await,
        }
    }
    .instrument(tracing::debug_span!("append_event", %tenant_id, %event_id))
    .await;
    if let Err(error) = appended {
        // The append may still have happened (only its acknowledgement was lost): the key
        // stays claimed for this event id, and a repeat appends it again, deduplicated.
        tracing::warn!(%error, %tenant_id, %event_id, "event not known to be appended");
        let advice = match idempotency_key {
            Some(_) => "retry with the same idempotency key",
            None => {
                "retry later, with an idempotency key so that a retry cannot create the event twice"
            }
        };
        return Err(ApiError::Unavailable(format!(
            "the event log did not acknowledge the event; {advice}"
        )));
    }
    herald_metrics::metrics().event_accepted(started.elapsed(), append_started.elapsed());
    tracing::debug!(%tenant_id, %event_id, "event accepted");
    Ok(accepted(event_id))
}

const MAX_SCHEDULE_AHEAD_DAYS: i64 = 30;

fn validate_schedule(request: &CreateEvent, now: DateTime<Utc>) -> Result<(), ApiError> {
    if let Some(after) = request.deliver_after {
        if after - now > chrono::Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
            return Err(ApiError::invalid(
                "deliver_after",
                format!("must be at most {MAX_SCHEDULE_AHEAD_DAYS} days ahead"),
            ));
        }
    }
    Ok(())
}

fn accepted(event_id: EventId) -> (StatusCode, Json<EventAcceptedResponse>) {
    (
        StatusCode::ACCEPTED,
        Json(EventAcceptedResponse {
            event_id: event_id.as_uuid(),
        }),
    )
}

fn idempotency_key(
    headers: &HeaderMap,
    body_key: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let header_key = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?,
        ),
        None => None,
    };
    let key = match (header_key, body_key) {
        (Some(header), Some(body)) if header != body => {
            return Err(ApiError::invalid(
                "idempotency_key",
                "differs from the Idempotency-Key header; send one or make them equal",
            ))
        }
        (header, body) => header.or(body),
    };
    if let Some(key) = key {
        validation::idempotency_key(key)
            .map_err(|error| ApiError::invalid("idempotency_key", error.to_string()))?;
    }
    Ok(key.map(str::to_owned))
}

async fn route(
    state: &CommandState,
    tenant_id: TenantId,
    request: &CreateEvent,
) -> Result<Vec<EndpointId>, ApiError> {
    let routes = state.routing.routes(tenant_id).await?;
    if let Some(targets) = &request.target_endpoints {
        for (index, target) in targets.iter().enumerate() {
            if !routes
                .iter()
                .any(|route| route.endpoint_id.as_uuid() == *target)
            {
                return Err(unroutable_target(state, tenant_id, index, *target).await);
            }
        }
    }
    Ok(routes
        .iter()
        .filter(|route| route.accepts(&request.event_type))
        .filter(|route| {
            request
                .target_endpoints
                .as_ref()
                .is_none_or(|targets| targets.contains(&route.endpoint_id.as_uuid()))
        })
        .map(|route| route.endpoint_id)
        .collect())
}

/// Why a named target is not among the tenant's routes, looked up only when one is not.
async fn unroutable_target(
    state: &CommandState,
    tenant_id: TenantId,
    index: usize,
    target: uuid::Uuid,
) -> ApiError {
    let field = format!("target_endpoints[{index}]");
    match herald_store::endpoints::get_for_tenant(&state.pool, tenant_id, EndpointId(target)).await
    {
        Ok(None) => ApiError::NotFound(format!(
            "`{field}`: this tenant has no endpoint {target}; list them at /v1/webhook_endpoints"
        )),
        Ok(Some(endpoint)) if !endpoint.enabled => ApiError::Conflict(format!(
            "`{field}`: endpoint {target} is disabled; enable it or leave it out"
        )),
        // Created or enabled a moment ago, and this instance has not heard of it yet.
        Ok(Some(_)) => ApiError::Conflict(format!(
            "`{field}`: endpoint {target} is not known to routing yet; retry in a second"
        )),
        Err(error) => ApiError::from(error),
    }
}

/// The trace id of an event whose caller sent no `traceparent`: the exported ingest span's
/// (a new trace), or a new one when nothing is exported; recorded in the request span, which
/// records an incoming one itself.
fn started_trace_id(exported: Option<u128>) -> String {
    let started = format!(
        "{:032x}",
        exported.unwrap_or_else(|| rand::random::<u128>().max(1))
    );
    tracing::Span::current().record("trace_id", started.as_str());
    started
}
