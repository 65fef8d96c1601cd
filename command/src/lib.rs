//! Herald's command (ingest) service: operators create tenants, tenants subscribe endpoints
//! and submit events. Events are validated, routed and appended to the log; configuration is
//! written to Postgres and every change is also appended to the log.

pub mod config;
pub mod endpoints;
pub mod events;
pub mod idempotency;
pub mod routing;
pub mod state;
pub mod tenants;
pub mod validation;

pub use config::CommandConfig;
pub use state::CommandState;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::{Extension, Router};
use herald_http::json_body::BodyLimit;
use herald_schemas::{LogMessage, TenantId};
use tokio_util::sync::CancellationToken;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        tenants::create_tenant,
        endpoints::create_endpoint,
        endpoints::rotate_secret,
        events::create_event
    ),
    components(schemas(herald_http::ProblemDetails))
)]
pub struct CommandApi;

pub fn router(state: CommandState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/admin/v1/tenants", post(tenants::create_tenant))
        .route("/v1/webhook_endpoints", post(endpoints::create_endpoint))
        .route(
            "/v1/webhook_endpoints/{endpoint_id}/secret/rotate",
            post(endpoints::rotate_secret),
        )
        .route("/v1/events", post(events::create_event))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .with_state(state)
}

/// Appends a configuration change to the log. Postgres already holds the change and is the
/// source of truth for configuration, so a failure here is logged rather than failing the
/// request that made the change.
/// Stages a configuration change's log message in the transaction that makes the change;
/// `state.outbox.send` appends it once the transaction has committed.
pub(crate) async fn stage_config_change(
    connection: &mut sqlx::PgConnection,
    state: &CommandState,
    tenant_id: TenantId,
    message: &LogMessage,
) -> Result<herald_log::outbox::Staged, sqlx::Error> {
    let subject = state.publisher.namespace().config_subject(tenant_id);
    herald_log::outbox::Outbox::stage(connection, subject, message).await
}

/// Keeps this process's routing cache in step with changes made through other processes,
/// until `shutdown`.
pub async fn follow_config_changes(
    state: CommandState,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) {
    let subject = state.publisher.namespace().config_filter();
    herald_log::follow(nats, subject, shutdown, |message| {
        if let Some((tenant_id, _)) = message.changed_endpoint() {
            state.routing.invalidate(tenant_id);
        }
    })
    .await;
}
