//! Replays from the log (ADR 0014): `POST /v1/replays` delivers a tenant's accepted events of a
//! time range again, read from the log rather than the read model, to the endpoints each
//! event had (`as_then`) or to today's (`as_now`). A dry run reads the log here and answers
//! with counts; a real replay is appended as `replay.started.v1` and performed by delivery
//! (`delivery/src/log_replays.rs`). `GET /v1/replays[/{replay_id}]` shows replays and their
//! progress from the `replays` table the projector keeps (`projector/src/replays_projection.rs`).

use crate::params::{parse_limit, parse_uuid};
use crate::replay::take_replay_allowance;
use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::EventTypeName;
use herald_http::{ApiError, ApiJson, ApiQuery, AuthenticatedTenant};
use herald_log::event_reader::{EventReader, ReadFrom};
use herald_schemas::{EndpointId, LogMessage, ReplayId, ReplayMode, ReplayStarted, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const DEFAULT_EVENTS_PER_SECOND: u32 = 100;
const MAX_EVENTS_PER_SECOND: u32 = 1_000;
const MAX_EVENT_TYPES: usize = 100;

/// To which endpoints each event goes again.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// To the endpoints the event was routed to when it was accepted.
    AsThen,
    /// To the tenant's endpoints enabled now whose event-type filter matches the event.
    AsNow,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogReplayRequest {
    /// Events accepted at or after this time (RFC 3339).
    pub since: DateTime<Utc>,
    /// Events accepted before this time (RFC 3339). A time still to come is taken as now: a
    /// replay repeats what the log holds. At or before `since`, the range holds no events.
    pub until: DateTime<Utc>,
    pub mode: Mode,
    /// Only deliveries to this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// Only events of these types.
    #[schema(value_type = Option<Vec<EventTypeName>>, min_items = 1, max_items = 100)]
    pub event_types: Option<Vec<String>>,
    /// Events replayed a second (default 100).
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1, maximum = 1000)]
    pub events_per_second: Option<u32>,
    /// Count what would be replayed, send nothing and record nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogReplayAccepted {
    pub replay_id: Uuid,
    /// Always `running`: follow it at `/v1/replays/{replay_id}`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunEndpoint {
    pub endpoint_id: Uuid,
    /// Deliveries to this endpoint the replay would schedule.
    pub deliveries: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogReplayDryRun {
    pub dry_run: bool,
    /// Events that would be delivered again (at least one selected delivery each).
    pub events: u64,
    /// Deliveries that would be scheduled.
    pub deliveries: u64,
    /// Per endpoint, in `endpoint_id` order.
    pub endpoints: Vec<DryRunEndpoint>,
}

/// A replay from the log and how far it got.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct LogReplayView {
    pub replay_id: Uuid,
    /// `as_then` or `as_now`.
    pub mode: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub endpoint_id: Option<Uuid>,
    pub event_types: Option<Vec<String>>,
    pub events_per_second: i32,
    /// `running` or `finished`.
    pub status: String,
    pub events_replayed: i64,
    pub deliveries_scheduled: i64,
    /// The log stream sequence of the last event handled (0: none yet).
    pub through_sequence: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogReplayList {
    /// Newest first.
    pub replays: Vec<LogReplayView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListReplaysParams {
    /// Replays to return, newest first (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

const VIEW_COLUMNS: &str = "replay_id, mode, since, until, endpoint_id, event_types, \
     events_per_second, status, events_replayed, deliveries_scheduled, through_sequence, \
     started_at, updated_at, finished_at";

#[utoipa::path(
    post, path = "/v1/replays", tag = "replays",
    request_body = LogReplayRequest,
    responses(
        (status = 200, description = "Dry run: what the replay would send; nothing was sent or recorded", body = LogReplayDryRun),
        (status = 202, description = "Recorded in the log; delivery replays the events, paced. Follow it at the Location", body = LogReplayAccepted,
            headers(("Location" = String, description = "/v1/replays/{replay_id}"))),
        (status = 400, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "`endpoint_id` names no endpoint of this tenant", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid (mode, or a `since` before the log's retention); `field` names it", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many replays for this tenant; see Retry-After", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn start_replay(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    ApiJson(request): ApiJson<LogReplayRequest>,
) -> Result<Response, ApiError> {
    let started = validate(&state, tenant_id, &request).await?;
    take_replay_allowance(&state, tenant_id)?;
    if request.dry_run {
        return Ok(Json(dry_run(&state, &started).await?).into_response());
    }
    let subject = state.publisher.namespace().replay_subject(tenant_id);
    state
        .publisher
        .publish(subject, &LogMessage::ReplayStarted(started.clone()))
        .await
        .map_err(|error| {
            tracing::warn!(%error, "replay not appended");
            ApiError::Unavailable(
                "the event log is unavailable; no replay was started, retry later".to_owned(),
            )
        })?;
    tracing::info!(%tenant_id, replay_id = %started.replay_id, mode = started.mode.as_str(), "replay from the log started");
    let mut response = (
        StatusCode::ACCEPTED,
        Json(LogReplayAccepted {
            replay_id: started.replay_id.as_uuid(),
            status: "running".to_owned(),
        }),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/replays/{}", started.replay_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Checks the request against the log and the tenant's endpoints; the replay it describes.
async fn validate(
    state: &QueryState,
    tenant_id: TenantId,
    fields: &LogReplayRequest,
) -> Result<ReplayStarted, ApiError> {
    let now = Utc::now();
    let until = fields.until.min(now);
    let events_per_second = fields
        .events_per_second
        .unwrap_or(DEFAULT_EVENTS_PER_SECOND);
    if !(1..=MAX_EVENTS_PER_SECOND).contains(&events_per_second) {
        return Err(ApiError::invalid(
            "events_per_second",
            format!("must be 1-{MAX_EVENTS_PER_SECOND} (default {DEFAULT_EVENTS_PER_SECOND})"),
        ));
    }
    if let Some(types) = &fields.event_types {
        if types.is_empty() || types.len() > MAX_EVENT_TYPES {
            return Err(ApiError::invalid(
                "event_types",
                format!("must list 1-{MAX_EVENT_TYPES} event types, or be left out for all"),
            ));
        }
        if let Some(index) = types.iter().position(|name| name.trim().is_empty()) {
            return Err(ApiError::invalid(
                format!("event_types[{index}]"),
                "must not be empty",
            ));
        }
    }
    if let Some(endpoint_id) = fields.endpoint_id {
        let found = herald_store::endpoints::get_for_tenant(
            &state.pool,
            tenant_id,
            EndpointId(endpoint_id),
        )
        .await?;
        if found.is_none() {
            return Err(ApiError::NotFound(format!(
                "`endpoint_id`: this tenant has no endpoint {endpoint_id}; list them at /v1/webhook_endpoints"
            )));
        }
    }
    if let Some(oldest) = oldest_kept(state).await? {
        if fields.since < oldest {
            return Err(ApiError::invalid(
                "since",
                format!(
                    "the log only holds events appended from {} on (older ones were removed by its retention); use a `since` at or after it",
                    oldest.to_rfc3339()
                ),
            ));
        }
    }
    Ok(ReplayStarted {
        replay_id: ReplayId::generate(),
        tenant_id,
        since: fields.since,
        until,
        mode: match fields.mode {
            Mode::AsThen => ReplayMode::AsThen,
            Mode::AsNow => ReplayMode::AsNow,
        },
        endpoint_id: fields.endpoint_id.map(EndpointId),
        event_types: fields.event_types.clone(),
        events_per_second,
        started_at: now,
    })
}

/// When the log's oldest message was appended, if the log has removed older ones (its age
/// limit): a range starting before it cannot be replayed whole.
async fn oldest_kept(state: &QueryState) -> Result<Option<DateTime<Utc>>, ApiError> {
    let unavailable = |error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "log unavailable");
        ApiError::Unavailable("the event log is unavailable; retry later".to_owned())
    };
    let name = state.publisher.namespace().log_stream();
    let mut stream = state
        .publisher
        .jetstream()
        .get_stream(name)
        .await
        .map_err(|error| unavailable(&error))?;
    let info = stream.info().await.map_err(|error| unavailable(&error))?;
    if info.state.first_sequence <= 1 {
        return Ok(None);
    }
    Ok(DateTime::from_timestamp(
        info.state.first_timestamp.unix_timestamp(),
        0,
    ))
}

/// Reads the log as the replay would and counts the deliveries it would schedule.
async fn dry_run(state: &QueryState, started: &ReplayStarted) -> Result<LogReplayDryRun, ApiError> {
    let unavailable = |error: &dyn std::fmt::Display| {
        tracing::warn!(%error, "log unavailable for a dry run");
        ApiError::Unavailable("the event log is unavailable; retry later".to_owned())
    };
    let routes = herald_store::endpoints::routes_for_tenant(&state.pool, started.tenant_id).await?;
    let namespace = state.publisher.namespace();
    let stream = state
        .publisher
        .jetstream()
        .get_stream(namespace.log_stream())
        .await
        .map_err(|error| unavailable(&error))?;
    let mut events = EventReader::open(
        &stream,
        namespace.event_subject(started.tenant_id),
        ReadFrom::Time(started.since),
        started.until,
    )
    .await
    .map_err(|error| unavailable(&error))?;
    let mut per_endpoint: BTreeMap<Uuid, u64> = BTreeMap::new();
    let mut event_count = 0;
    while let Some((_, event)) = events.next().await.map_err(|error| unavailable(&error))? {
        let subscribed_now: Vec<EndpointId> = routes
            .iter()
            .filter(|route| {
                herald_rules::routing::subscribes(route.event_types.as_deref(), &event.event_type)
            })
            .map(|route| route.endpoint_id)
            .collect();
        let targets = started.targets(&event, &subscribed_now);
        if !targets.is_empty() {
            event_count += 1;
        }
        for endpoint_id in targets {
            *per_endpoint.entry(endpoint_id.as_uuid()).or_default() += 1;
        }
    }
    Ok(LogReplayDryRun {
        dry_run: true,
        events: event_count,
        deliveries: per_endpoint.values().sum(),
        endpoints: per_endpoint
            .into_iter()
            .map(|(endpoint_id, deliveries)| DryRunEndpoint {
                endpoint_id,
                deliveries,
            })
            .collect(),
    })
}

#[utoipa::path(
    get, path = "/v1/replays/{replay_id}", tag = "replays",
    params(("replay_id" = Uuid, Path, description = "The id returned when the replay was started")),
    responses(
        (status = 200, body = LogReplayView),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such replay for this tenant (or not projected yet: replays appear within a second)", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_replay(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    Path(replay_id): Path<String>,
) -> Result<Json<LogReplayView>, ApiError> {
    let replay_id = parse_uuid("replay_id", &replay_id)?;
    sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM replays WHERE replay_id = $1 AND tenant_id = $2"
    ))
    .bind(replay_id)
    .bind(tenant_id.as_uuid())
    .fetch_optional(&state.pool)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("replay {replay_id} does not exist for this tenant")))
}

#[utoipa::path(
    get, path = "/v1/replays", tag = "replays",
    params(ListReplaysParams),
    responses(
        (status = 200, body = LogReplayList),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_replays(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    ApiQuery(params): ApiQuery<ListReplaysParams>,
) -> Result<Json<LogReplayList>, ApiError> {
    let limit = parse_limit(params.limit.as_deref(), 20, 100)?;
    let replays = sqlx::query_as(&format!(
        "SELECT {VIEW_COLUMNS} FROM replays WHERE tenant_id = $1 \
         ORDER BY started_at DESC, replay_id DESC LIMIT $2"
    ))
    .bind(tenant_id.as_uuid())
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(LogReplayList { replays }))
}
