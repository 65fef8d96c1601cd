//! Herald's projectors: apply the log to the read models. Postgres answers "what is the
//! state now and what happened"; ClickHouse answers "how well is delivery going". Both can be
//! dropped and rebuilt from the log.

pub mod batch;
pub mod clickhouse_hold;
pub mod clickhouse_projection;
pub mod clickhouse_rebuild;
pub mod config;
pub mod endpoint_health;
pub mod error;
pub mod lag;
pub mod maintenance;
pub mod postgres_projection;
pub mod postgres_rows;
pub mod reader_watch;
pub mod rebuild;
pub mod reconcile;
pub mod replays_projection;
mod status_sql;

pub use config::ProjectorConfig;
pub use error::ProjectorError;

use crate::clickhouse_projection::ClickHouseProjection;
use crate::lag::{AppliedPosition, Projection};
use crate::maintenance::Maintenance;
use crate::reader_watch::ReaderWatch;
use async_nats::jetstream;
use herald_schemas::Namespace;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs both projections and the housekeeping until `shutdown`. A batch in progress is
/// finished (or, if its store is down, left unacknowledged for redelivery). `started` is
/// called once the log stream is open and the projections run.
pub async fn run(
    config: ProjectorConfig,
    jetstream: jetstream::Context,
    namespace: Namespace,
    pool: PgPool,
    clickhouse: clickhouse::Client,
    shutdown: CancellationToken,
    started: impl FnOnce() + Send,
) -> Result<(), ProjectorError> {
    // A projection that refuses to run stops the others too, so the process fails visibly.
    let shutdown = shutdown.child_token();
    let stop_all_on_error = |outcome: Result<(), ProjectorError>, shutdown: CancellationToken| {
        if outcome.is_err() {
            shutdown.cancel();
        }
        outcome
    };
    // Opened once the log answers: a server restarting while Herald starts must not stop the
    // projections (`herald_log::when_available`).
    let log_stream =
        herald_log::when_available::stream(&jetstream, &namespace.log_stream(), &shutdown)
            .await
            .map_err(|error| ProjectorError::log("cannot open the log stream", error))?;
    let Some(log_stream) = log_stream else {
        return Ok(());
    };
    let postgres_applied = AppliedPosition::default();
    let clickhouse_applied = AppliedPosition::default();
    let (postgres_reader, clickhouse_reader) = (ReaderWatch::default(), ReaderWatch::default());
    let lag_sampling = tokio::spawn(lag::sample(
        log_stream.clone(),
        vec![
            Projection {
                label: "postgres",
                filter_subject: ">".to_owned(),
                applied: postgres_applied.clone(),
                reader: postgres_reader.clone(),
            },
            Projection {
                label: "clickhouse",
                filter_subject: namespace.attempts_filter(),
                applied: clickhouse_applied.clone(),
                reader: clickhouse_reader.clone(),
            },
        ],
        shutdown.clone(),
    ));
    let reopening = tokio::spawn(reader_watch::reopen_on_reconnection(
        jetstream.client(),
        vec![postgres_reader.clone(), clickhouse_reader.clone()],
        shutdown.clone(),
    ));
    let postgres_run = postgres_projection::run(
        pool.clone(),
        namespace.postgres_checkpoint(),
        log_stream.clone(),
        config.postgres_batch_messages,
        Duration::from_millis(config.postgres_batch_window_ms),
        postgres_applied,
        postgres_reader,
        shutdown.clone(),
    );
    let token = shutdown.clone();
    let postgres = tokio::spawn(async move { stop_all_on_error(postgres_run.await, token) });
    let analytics_run = ClickHouseProjection {
        client: clickhouse.clone(),
        pool: pool.clone(),
        max_rows: config.clickhouse_batch_rows,
        flush_after: Duration::from_millis(config.clickhouse_flush_ms),
        applied: clickhouse_applied,
        reader: clickhouse_reader,
    }
    .run(log_stream, namespace.attempts_filter(), shutdown.clone());
    let token = shutdown.clone();
    let analytics = tokio::spawn(async move { stop_all_on_error(analytics_run.await, token) });
    let housekeeping = tokio::spawn(
        Maintenance {
            pool,
            clickhouse,
            retention_days: config.retention_days,
            idempotency_retention_hours: config.idempotency_retention_hours,
        }
        .run(shutdown.clone()),
    );
    tracing::info!("projector running");
    started();
    let (postgres, analytics, _, _, _) =
        tokio::join!(postgres, analytics, housekeeping, lag_sampling, reopening);
    tracing::info!("projector stopped");
    for outcome in [postgres, analytics] {
        outcome??;
    }
    Ok(())
}
