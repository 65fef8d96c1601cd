//! Herald's query service: the read API over the Postgres read models (events, deliveries,
//! attempt history, endpoints), described by OpenAPI.

pub mod bulk_replay;
pub mod deliveries;
pub mod endpoints;
pub mod event_list;
pub mod events;
pub mod log_replay;
pub mod params;
pub mod replay;
pub mod state;

pub use state::QueryState;

use axum::routing::{get, post};
use axum::Router;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    event_list::list_events,
    events::get_event,
    replay::replay_event,
    deliveries::list_deliveries,
    bulk_replay::replay_deliveries,
    endpoints::list_endpoints,
    endpoints::get_endpoint,
    log_replay::start_replay,
    log_replay::get_replay,
    log_replay::list_replays
))]
pub struct QueryApi;

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/events", get(event_list::list_events))
        .route("/v1/events/{event_id}", get(events::get_event))
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
        .with_state(state)
}
