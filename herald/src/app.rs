//! Runs one service or all of them in this process, on shared connections, until shutdown.

use crate::config::HeraldConfig;
use crate::health::healthz;
use crate::migrate::{migrate, MigrateError};
use crate::stack::{Stack, StackError};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use herald_command::CommandState;
use herald_http::TenantAuthenticator;
use herald_log::LogPublisher;
use herald_query::QueryState;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    All,
    Command,
    Delivery,
    Projector,
    Query,
}

impl Service {
    fn includes(self, other: Service) -> bool {
        self == Service::All || self == other
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("{0}")]
    Service(String),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Connects, migrates, serves HTTP on `listener` and runs the background services until
/// `shutdown` is cancelled or one of them fails.
pub async fn run(
    service: Service,
    config: HeraldConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let stack = Stack::connect(&config.stack).await?;
    migrate(&config.stack, &stack).await?;
    let publisher = LogPublisher::new(stack.jetstream.clone(), stack.namespace.clone());
    let authenticator = TenantAuthenticator::new(stack.pool.clone());
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .with_state(stack.clone())
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        );
    let mut background: JoinSet<Result<(), String>> = JoinSet::new();

    if service.includes(Service::Command) {
        let state = CommandState::new(
            &config.command,
            stack.pool.clone(),
            publisher.clone(),
            authenticator.clone(),
        )
        .map_err(|error| RunError::Service(error.to_string()))?;
        router = router.merge(herald_command::router(
            state.clone(),
            config.command.max_body_bytes,
        ));
        background.spawn(
            herald_command::follow_config_changes(state, stack.nats.clone(), shutdown.clone())
                .map_ok(),
        );
    }
    // Whoever stages configuration changes also relays those left unappended.
    if service.includes(Service::Command) || service.includes(Service::Delivery) {
        let outbox = herald_log::outbox::Outbox::new(stack.pool.clone(), publisher.clone());
        background.spawn(outbox.relay(shutdown.clone()).map_ok());
    }
    if service.includes(Service::Query) {
        router = router.merge(herald_query::router(QueryState::new(
            stack.pool.clone(),
            authenticator.clone(),
            publisher.clone(),
        )));
    }
    if service.includes(Service::Delivery) {
        let run = herald_delivery::run(
            config.delivery.clone(),
            publisher.clone(),
            stack.pool.clone(),
            shutdown.clone(),
        );
        background.spawn(async move { run.await.map_err(|error| error.to_string()) });
    }
    if service.includes(Service::Projector) {
        let run = herald_projector::run(
            config.projector.clone(),
            stack.jetstream.clone(),
            stack.namespace.clone(),
            stack.pool.clone(),
            stack.clickhouse.clone(),
            shutdown.clone(),
        );
        background.spawn(async move { run.await.map_err(|error| error.to_string()) });
    }

    let router = router.layer(middleware::from_fn(request_span));
    let address = listener.local_addr().map_err(RunError::Serve)?;
    tracing::info!(%address, ?service, "herald serving");
    let server =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut failure = None;
    tokio::select! {
        served = server => {
            if let Err(error) = served {
                failure = Some(RunError::Serve(error));
            }
        }
        Some(finished) = background.join_next() => {
            let reason = match finished {
                // Background services return on their own only when shutting down.
                Ok(Ok(())) if shutdown.is_cancelled() => None,
                Ok(Ok(())) => Some("a background service stopped unexpectedly".to_owned()),
                Ok(Err(error)) => Some(error),
                Err(error) => Some(error.to_string()),
            };
            if let Some(reason) = reason {
                tracing::error!(%reason, "stopping");
                failure = Some(RunError::Service(reason));
            }
        }
    }
    shutdown.cancel();
    while let Some(finished) = background.join_next().await {
        if let Ok(Err(error)) = finished {
            tracing::warn!(%error, "service stopped with an error");
        }
    }
    stack.nats.flush().await.ok();
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

trait MapOk {
    fn map_ok(self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl<F: std::future::Future<Output = ()> + Send> MapOk for F {
    async fn map_ok(self) -> Result<(), String> {
        self.await;
        Ok(())
    }
}

/// One span per request; the tenant is filled in once the API key is checked.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        tenant_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    async move {
        let response = next.run(request).await;
        tracing::Span::current().record("status", response.status().as_u16());
        if response.status().is_server_error() {
            tracing::warn!("request failed");
        }
        response
    }
    .instrument(span)
    .await
}
