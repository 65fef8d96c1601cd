//! Herald's command (ingest) service: operators create tenants, tenants subscribe endpoints
//! and submit events.
//!
//! - **Events** are validated, routed to the tenant's endpoints (ADR 0001) and appended to the
//!   log; the answer is 202 only once the log has acknowledged the append (ADR 0010).
//! - **Configuration** (tenants, API keys, endpoints, secret rotations) is written to Postgres, its
//!   source of truth, and the change's log message is staged in `log_outbox` in the same
//!   transaction ([`herald_log::outbox`], ADR 0009). After the commit the request appends the
//!   message and removes it from the outbox; if that fails, or the process dies first, the
//!   outbox relay of any command or delivery process appends it a few seconds later. Nothing
//!   committed is left out of the log.
//! - **Herald's own events** (`herald.…`: endpoint disabled, circuit opened or closed,
//!   delivery dead-lettered) are read from the log's facts and accepted like a producer's,
//!   routed only to endpoints that list them ([`operational_events`], ADR 0020).
//! - This process's routing cache is refreshed at once by its own changes and by the config
//!   messages other processes append ([`follow_config_changes`]).

pub mod api_keys;
pub mod config;
pub mod endpoint_changes;
pub mod endpoint_headers;
pub mod endpoint_slo;
pub mod endpoints;
pub mod events;
pub mod field_schemas;
pub mod idempotency;
pub mod ingest_limit;
pub mod operational_events;
pub mod routing;
pub mod state;
pub mod tenants;
pub mod validation;

pub use config::CommandConfig;
pub use operational_events::announce_operational_events;
pub use state::CommandState;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, patch, post};
use axum::{Extension, Router};
use herald_http::json_body::BodyLimit;
use herald_schemas::{LogMessage, TenantId};
use tokio_util::sync::CancellationToken;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        tenants::create_tenant,
        tenants::list_tenants,
        tenants::update_tenant,
        api_keys::create_api_key,
        api_keys::list_api_keys,
        api_keys::revoke_api_key,
        endpoints::create_endpoint,
        endpoint_changes::update_endpoint,
        endpoint_changes::delete_endpoint,
        endpoints::rotate_secret,
        events::create_event
    ),
    // A header parameter does not bring its schema along, nor does a schema referred to by
    // name from a hand-written one.
    components(schemas(
        herald_http::ProblemDetails,
        field_schemas::IdempotencyKeyHeader,
        field_schemas::CustomHeaderValue
    ))
)]
pub struct CommandApi;

pub fn router(state: CommandState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/admin/v1/tenants",
            post(tenants::create_tenant).get(tenants::list_tenants),
        )
        .route(
            "/admin/v1/tenants/{tenant_id}",
            patch(tenants::update_tenant),
        )
        .route(
            "/v1/api_keys",
            post(api_keys::create_api_key).get(api_keys::list_api_keys),
        )
        .route("/v1/api_keys/{key_id}", delete(api_keys::revoke_api_key))
        .route("/v1/webhook_endpoints", post(endpoints::create_endpoint))
        .route(
            "/v1/webhook_endpoints/{endpoint_id}",
            patch(endpoint_changes::update_endpoint).delete(endpoint_changes::delete_endpoint),
        )
        .route(
            "/v1/webhook_endpoints/{endpoint_id}/secret/rotate",
            post(endpoints::rotate_secret),
        )
        .route("/v1/events", post(events::create_event))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .with_state(state)
}

/// Stages a configuration change's log message in the transaction that makes the change;
/// `state.outbox.send` appends it once the transaction has committed (the relay does if that
/// append fails).
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
        if let Some(tenant_id) = message.changed_credentials() {
            state.authenticator.forget_tenant(tenant_id);
            state.ingest_limits.forget(tenant_id);
        }
    })
    .await;
}

/// How often previous signing secrets whose grace period has ended are erased.
const SECRET_ERASURE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Erases rotated-out signing secrets once their grace period ends, until `shutdown`.
/// Delivery stops signing with one at that moment anyway; this takes it out of storage.
pub async fn erase_expired_secrets(pool: sqlx::PgPool, shutdown: CancellationToken) {
    loop {
        match herald_store::endpoints::erase_expired_previous_secrets(&pool).await {
            Ok(0) => {}
            Ok(erased) => tracing::info!(erased, "previous signing secrets erased"),
            Err(error) => tracing::warn!(%error, "could not erase expired previous secrets"),
        }
        tokio::select! {
            () = tokio::time::sleep(SECRET_ERASURE_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
