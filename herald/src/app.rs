//! Runs one service or all of them in this process, on shared connections, until shutdown.

use crate::config::HeraldConfig;
use crate::health::{healthz, HealthState, Started};
use crate::migrate::{migrate, MigrateError};
use crate::stack::{Stack, StackError};
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use herald_command::state::InvalidConfig;
use herald_command::CommandState;
use herald_http::TenantAuthenticator;
use herald_log::LogPublisher;
use herald_query::QueryState;
use std::convert::Infallible;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    All,
    Command,
    Delivery,
    Projector,
    Query,
    /// The HTTP API (command and query) without delivering or projecting.
    Api,
}

impl Service {
    fn includes(self, other: Service) -> bool {
        self == Service::All
            || self == other
            || (self == Service::Api && matches!(other, Service::Command | Service::Query))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error(transparent)]
    Secrets(#[from] crate::config::ConfigError),
    #[error("could not seal the endpoint secrets stored in the clear: {0}")]
    Seal(sqlx::Error),
    #[error(transparent)]
    Service(#[from] ServiceFailed),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A background service that ended the run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceFailed {
    #[error("{service}: {source}")]
    Failed {
        service: &'static str,
        source: BoxError,
    },
    #[error("the {service} stopped unexpectedly")]
    Stopped { service: &'static str },
    #[error("a background service panicked: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

/// Connects, migrates, serves HTTP on `listener` and runs the background services until
/// `shutdown` is cancelled or one of them fails.
pub async fn run(
    service: Service,
    config: HeraldConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // The services that read or write endpoint secrets need the master keys; checked before
    // anything else so that a missing key is the first thing an operator hears of.
    let handles_secrets = service.includes(Service::Command) || service.includes(Service::Delivery);
    let vault = match handles_secrets {
        true => Some(config.secrets.vault()?),
        false => None,
    };
    let stack = Stack::connect(&config.stack).await?;
    migrate(&config.stack, &stack).await?;
    if let Some(vault) = &vault {
        seal_plaintext_secrets(&stack.pool, vault).await?;
    }
    let publisher = LogPublisher::new(stack.jetstream.clone(), stack.namespace.clone())
        .with_grouped_writes(std::time::Duration::from_millis(config.stack.log_linger_ms));
    let authenticator = TenantAuthenticator::new(stack.pool.clone());
    let delivery_started = Started::default();
    let projector_started = Started::default();
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .with_state(HealthState {
            stack: stack.clone(),
            delivery: service
                .includes(Service::Delivery)
                .then(|| delivery_started.clone()),
            projector: service
                .includes(Service::Projector)
                .then(|| projector_started.clone()),
        })
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/metrics", get(crate::health::metrics))
        .merge(crate::api_docs::routes());
    // Each task ends with its service's name, or with why it failed.
    let mut background: JoinSet<Result<&'static str, ServiceFailed>> = JoinSet::new();

    if service.includes(Service::Command) {
        let state = CommandState::new(
            &config.command,
            stack.pool.clone(),
            publisher.clone(),
            authenticator.clone(),
            vault.clone().ok_or(InvalidConfig::NoVault)?,
        )?;
        router = router.merge(herald_command::router(
            state.clone(),
            config.command.max_body_bytes,
        ));
        background.spawn(background_task(
            "configuration follower",
            infallible(herald_command::follow_config_changes(
                state.clone(),
                stack.nats.clone(),
                shutdown.clone(),
            )),
        ));
        background.spawn(background_task(
            "operational events",
            herald_command::announce_operational_events(state.clone(), shutdown.clone()),
        ));
        background.spawn(background_task(
            "secret eraser",
            infallible(herald_command::erase_expired_secrets(
                stack.pool.clone(),
                shutdown.clone(),
            )),
        ));
    }
    // A query-only process authenticates too: it drops revoked keys and suspended tenants
    // when the log says so.
    if service.includes(Service::Query) && !service.includes(Service::Command) {
        let (authenticator, nats, shutdown) =
            (authenticator.clone(), stack.nats.clone(), shutdown.clone());
        let subject = publisher.namespace().config_filter();
        background.spawn(background_task(
            "credential follower",
            infallible(async move {
                herald_log::follow(nats, subject, shutdown, |message| {
                    if let Some(tenant_id) = message.changed_credentials() {
                        authenticator.forget_tenant(tenant_id);
                    }
                })
                .await
            }),
        ));
    }
    // Whoever stages configuration changes also relays those left unappended.
    if service.includes(Service::Command) || service.includes(Service::Delivery) {
        let outbox = herald_log::outbox::Outbox::new(stack.pool.clone(), publisher.clone());
        background.spawn(background_task(
            "outbox relay",
            infallible(outbox.relay(shutdown.clone())),
        ));
    }
    if service.includes(Service::Query) {
        let watch = herald_query::slo_watch::SloWatch::new(
            stack.pool.clone(),
            stack.clickhouse.clone(),
            publisher.clone(),
        );
        let every = std::time::Duration::from_millis(config.query.slo_evaluation_ms.max(100));
        background.spawn(background_task(
            "objective watcher",
            infallible(watch.run(every, shutdown.clone())),
        ));
        let listening_on = listener.local_addr().map_err(RunError::Serve)?;
        router = router.merge(herald_query::router(QueryState::new(
            &config.query,
            stack.pool.clone(),
            stack.clickhouse.clone(),
            authenticator.clone(),
            herald_http::admin::AdminToken::new(
                config
                    .command
                    .admin_token
                    .as_ref()
                    .map(secrecy::ExposeSecret::expose_secret),
            ),
            publisher.clone(),
            listening_on,
        )));
    }
    if service == Service::All {
        // Ingest's requests queued behind thousands of delivery tasks in one runtime, and its
        // appends behind delivery's traffic on one NATS connection: with delivery saturated,
        // a 202 took hundreds of milliseconds (docs/PERFORMANCE.md, `saturated`). On threads
        // and connections of its own, the kernel shares the CPU between ingest and delivery.
        // (This failed before busy endpoints' backlogs stayed in the log: ingest let in more
        // than delivery could take, and the deferrals spiralled; ADR 0024.)
        let (delivery, stack_config, vault, shutdown, started) = (
            config.delivery.clone(),
            config.stack.clone(),
            vault.clone().ok_or(InvalidConfig::NoVault)?,
            shutdown.clone(),
            delivery_started.setter(),
        );
        let run = on_own_runtime("delivery", DELIVERY_THREADS, move || async move {
            let stack =
                Stack::connect_with_pool(&stack_config, stack_config.database_max_connections)
                    .await?;
            let publisher = LogPublisher::new(stack.jetstream.clone(), stack.namespace.clone())
                .with_grouped_writes(std::time::Duration::from_millis(stack_config.log_linger_ms));
            let delivered = herald_delivery::run(
                delivery,
                publisher.clone(),
                stack.pool.clone(),
                vault,
                shutdown,
                started,
            )
            .await;
            publisher.flush_grouped().await;
            stack.nats.flush().await.ok();
            Ok(delivered?)
        });
        background.spawn(background_task("delivery service", run));
    } else if service.includes(Service::Delivery) {
        let run = herald_delivery::run(
            config.delivery.clone(),
            publisher.clone(),
            stack.pool.clone(),
            vault.clone().ok_or(InvalidConfig::NoVault)?,
            shutdown.clone(),
            delivery_started.setter(),
        );
        background.spawn(background_task("delivery service", run));
    }
    if service == Service::All {
        // On the runtime that also delivers, the projections fell behind by a second every
        // second once delivery saturated the CPU (docs/PERFORMANCE.md, `saturated`): their
        // few tasks queued behind thousands of delivery tasks at every await. On threads and
        // connections of their own, the kernel shares the CPU between them and delivery.
        let (projector, stack_config, shutdown, started) = (
            config.projector.clone(),
            config.stack.clone(),
            shutdown.clone(),
            projector_started.setter(),
        );
        let run = on_own_runtime("projector", PROJECTOR_THREADS, move || async move {
            let stack = Stack::connect_with_pool(&stack_config, PROJECTOR_CONNECTIONS).await?;
            herald_projector::run(
                projector,
                stack.jetstream.clone(),
                stack.namespace.clone(),
                stack.pool.clone(),
                stack.clickhouse.clone(),
                shutdown,
                started,
            )
            .await?;
            stack.nats.flush().await.ok();
            Ok(())
        });
        background.spawn(background_task("projector", run));
    } else if service.includes(Service::Projector) {
        let run = herald_projector::run(
            config.projector.clone(),
            stack.jetstream.clone(),
            stack.namespace.clone(),
            stack.pool.clone(),
            stack.clickhouse.clone(),
            shutdown.clone(),
            projector_started.setter(),
        );
        background.spawn(background_task("projector", run));
    }

    let router = router.layer(middleware::from_fn(herald_http::request_span));
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
            let failed = match finished {
                // Background services return on their own only when shutting down.
                Ok(Ok(_)) if shutdown.is_cancelled() => None,
                Ok(Ok(service)) => Some(ServiceFailed::Stopped { service }),
                Ok(Err(failed)) => Some(failed),
                Err(panicked) => Some(ServiceFailed::from(panicked)),
            };
            if let Some(failed) = failed {
                tracing::error!(reason = %failed, "stopping");
                failure = Some(RunError::Service(failed));
            }
        }
    }
    shutdown.cancel();
    while let Some(finished) = background.join_next().await {
        if let Ok(Err(error)) = finished {
            tracing::warn!(%error, "service stopped with an error");
        }
    }
    publisher.flush_grouped().await;
    stack.nats.flush().await.ok();
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Threads of the projector's runtime in `herald all`: it runs two projections, each one
/// batch at a time.
const PROJECTOR_THREADS: usize = 1;
/// Threads of the delivery service's runtime in `herald all`. Two fill the 2-core machines
/// it is measured on (docs/PERFORMANCE.md); its work is mostly waiting on receivers and the
/// log, so more threads would mostly add context switches.
const DELIVERY_THREADS: usize = 2;
/// Postgres connections of the projector in `herald all`: its projection, checkpoints and
/// housekeeping use one at a time each.
const PROJECTOR_CONNECTIONS: u32 = 4;

/// Why a service on threads of its own stopped.
#[derive(Debug, thiserror::Error)]
enum OwnThreadsFailed {
    #[error("its threads could not be started: {0}")]
    Start(std::io::Error),
    #[error("its threads ended without an outcome")]
    Lost,
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Projector(#[from] herald_projector::ProjectorError),
    #[error(transparent)]
    Delivery(#[from] herald_delivery::DeliveryError),
}

/// Runs the future `make` returns on a runtime of its own with `workers` threads, so that
/// within `herald all` the kernel, not the order of one shared task queue, divides the CPU
/// between services; resolves to its outcome.
fn on_own_runtime<F, Fut>(
    name: &'static str,
    workers: usize,
    make: F,
) -> impl Future<Output = Result<(), OwnThreadsFailed>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), OwnThreadsFailed>>,
{
    let (sender, outcome) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(name)
                .enable_all()
                .build();
            let result = match runtime {
                Ok(runtime) => runtime.block_on(make()),
                Err(error) => Err(OwnThreadsFailed::Start(error)),
            };
            let _ = sender.send(result);
        });
    async move {
        started.map_err(OwnThreadsFailed::Start)?;
        outcome.await.unwrap_or(Err(OwnThreadsFailed::Lost))
    }
}

/// Seals secrets an earlier Herald stored in the clear, so that none stays readable in
/// Postgres once this release runs. Idempotent: a value already sealed is left alone.
async fn seal_plaintext_secrets(
    pool: &sqlx::PgPool,
    vault: &herald_store::secrets_vault::SecretsVault,
) -> Result<(), RunError> {
    let plaintext = herald_store::endpoints::values_by_key(pool)
        .await
        .map_err(RunError::Seal)?
        .into_iter()
        .any(|(key_id, count)| key_id == "plaintext" && count > 0);
    if plaintext {
        let report = herald_store::endpoints::reseal_plaintext(pool, vault)
            .await
            .map_err(RunError::Seal)?;
        tracing::info!(
            endpoints = report.endpoints_resealed,
            "endpoint secrets stored in the clear are sealed now"
        );
    }
    Ok(())
}

/// A background service's task: it ends with the service's name, or with why it failed.
/// Accepts any error type, so each service keeps its own.
async fn background_task<E>(
    service: &'static str,
    run: impl Future<Output = Result<(), E>>,
) -> Result<&'static str, ServiceFailed>
where
    E: std::error::Error + Send + Sync + 'static,
{
    run.await
        .map(|()| service)
        .map_err(|error| ServiceFailed::Failed {
            service,
            source: Box::new(error),
        })
}

/// A service that cannot fail (it only returns when shutting down).
async fn infallible(run: impl Future<Output = ()>) -> Result<(), Infallible> {
    run.await;
    Ok(())
}
