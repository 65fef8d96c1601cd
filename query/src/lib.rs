//! Herald's query service: the read API over the Postgres read models (events, deliveries,
//! attempt history, endpoints) and the ClickHouse SLIs, described by OpenAPI, and the
//! dashboard that uses it.

pub mod admin;
pub mod audit;
pub mod bulk_replay;
pub mod config;
pub mod dashboard;
pub mod deliveries;
pub mod endpoints;
pub mod event_list;
pub mod events;
pub mod explain;
pub mod log_replay;
pub mod params;
pub mod portal;
pub mod replay;
pub mod session;
pub mod sli;
pub mod slo_budget;
pub mod slo_watch;
pub mod state;
pub mod usage;

pub use config::QueryConfig;
pub use state::QueryState;

use axum::routing::{get, post};
use axum::Router;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    event_list::list_events,
    events::get_event,
    explain::explain_event,
    replay::replay_event,
    deliveries::list_deliveries,
    bulk_replay::replay_deliveries,
    endpoints::list_endpoints,
    endpoints::get_endpoint,
    log_replay::start_replay,
    log_replay::get_replay,
    log_replay::list_replays,
    sli::get_sli,
    sli::get_breakdown,
    session::get_session,
    portal::create_portal_session,
    admin::tenant_slis,
    admin::open_breakers,
    audit::list_changes,
    usage::get_usage,
    usage::tenant_usage
), components(schemas(
    // Named by query parameters, which do not bring their schemas along.
    params::AttemptOutcomeName,
    params::DeliveryStatusName,
    params::EventStatusName,
    herald_http::field_schemas::PageCursor,
    herald_http::field_schemas::EventTypeName,
)))]
pub struct QueryApi;

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/events", get(event_list::list_events))
        .route("/v1/events/{event_id}", get(events::get_event))
        .route("/v1/events/{event_id}/explain", get(explain::explain_event))
        .route("/v1/events/{event_id}/replay", post(replay::replay_event))
        .route("/v1/deliveries", get(deliveries::list_deliveries))
        .route(
            "/v1/deliveries/replay",
            post(bulk_replay::replay_deliveries),
        )
        .route(
            "/v1/replays",
            post(log_replay::start_replay).get(log_replay::list_replays),
        )
        .route("/v1/replays/{replay_id}", get(log_replay::get_replay))
        .route("/v1/webhook_endpoints", get(endpoints::list_endpoints))
        .route(
            "/v1/webhook_endpoints/{endpoint_id}",
            get(endpoints::get_endpoint),
        )
        .route("/v1/sli", get(sli::get_sli))
        .route("/v1/usage", get(usage::get_usage))
        .route("/admin/v1/usage", get(usage::tenant_usage))
        .route("/v1/sli/breakdown", get(sli::get_breakdown))
        .route("/v1/session", get(session::get_session))
        .route("/v1/audit", get(audit::list_changes))
        .route("/v1/portal_sessions", post(portal::create_portal_session))
        .route("/admin/v1/tenants/sli", get(admin::tenant_slis))
        .route("/admin/v1/breakers", get(admin::open_breakers))
        .merge(dashboard::routes())
        .with_state(state)
}
