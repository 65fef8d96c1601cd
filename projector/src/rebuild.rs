//! `herald rebuild --target postgres`: rebuilds the Postgres read model (`events`,
//! `deliveries`, `attempts`, `endpoint_health`, `replays`, and this projector's dead letters) from the log while live
//! traffic goes on, then switches over in one transaction. Usage (`*_usage_hourly`) is not
//! replaced: it outlives the log's retention, and the live projector has kept it exactly
//! (the copy counts into tables of its own that are dropped).
//!
//! The log is applied, with the live projector's own code (`postgres_projection::apply`),
//! to copies of the tables in schema `herald_rebuild`. Once the copy has nearly caught up,
//! the live projector's checkpoint row is locked (the live projector waits at its next
//! batch), the copy catches up to exactly that checkpoint, and the live tables' rows are
//! replaced by the copy's in the same transaction: readers see the old view until the
//! commit and the new one after it, and the live projector goes on from the same checkpoint.
//! The tables themselves stay (names, indexes, partitions, grants), so later migrations and
//! cached query plans keep working.

use crate::batch::{apply_log_through, sequence};
use crate::error::ProjectorError;
use crate::postgres_projection::apply;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};

/// Where the copies are built.
const SCHEMA: &str = "herald_rebuild";
/// The copy switches over once it is this close to the live projector.
const CLOSE_ENOUGH: u64 = 2_000;
const BATCH: usize = 1_000;

/// Where in the log a rebuild starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The first message; refused if the log no longer holds its beginning.
    Beginning,
    Sequence(u64),
    /// The first message appended at or after this time.
    Time(DateTime<Utc>),
}

/// How far a rebuild is, for a progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub applied_through: u64,
    /// Where the live view is (what the rebuild must reach).
    pub target: u64,
}

/// What a finished rebuild did.
#[derive(Debug)]
pub struct Rebuilt {
    pub started_at_sequence: u64,
    pub switched_at_sequence: u64,
    pub events: i64,
    pub deliveries: i64,
    pub attempts: i64,
}

pub struct PostgresRebuild {
    pub log_stream: jetstream::stream::Stream,
    pub pool: PgPool,
    /// The live projector's checkpoint name (`Namespace::postgres_checkpoint`).
    pub checkpoint: String,
}

impl PostgresRebuild {
    pub async fn run(
        &self,
        start_at: StartAt,
        mut progress: impl FnMut(Progress),
    ) -> Result<Rebuilt, ProjectorError> {
        let first = first_sequence(&self.log_stream, start_at).await?;
        let copy = self.prepare_copy(first).await?;
        let mut applied = first.saturating_sub(1);
        // Catch up with the live view, as often as it takes to get close.
        loop {
            let target = live_checkpoint(&self.pool, &self.checkpoint).await?;
            applied = self
                .apply_through(&copy, applied, target, &mut progress)
                .await?;
            if target.saturating_sub(applied) <= CLOSE_ENOUGH
                && live_checkpoint(&self.pool, &self.checkpoint).await? - applied <= CLOSE_ENOUGH
            {
                break;
            }
        }
        let rebuilt = self.switch_over(&copy, first, applied, &mut progress).await;
        copy.close().await;
        let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            .execute(&self.pool)
            .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, "the rebuild's copies were not dropped; drop schema {SCHEMA}");
        }
        rebuilt
    }

    /// Empty copies of the read model's tables, and a pool whose connections use them.
    async fn prepare_copy(&self, first: u64) -> Result<PgPool, ProjectorError> {
        let mut connection = self.pool.acquire().await?;
        (&mut *connection)
            .execute(
                format!(
                    "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; \
                     CREATE TABLE {SCHEMA}.events (LIKE public.events INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.deliveries (LIKE public.deliveries INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.attempts (LIKE public.attempts INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.endpoint_health \
                       (LIKE public.endpoint_health INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.replays (LIKE public.replays INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.tenant_usage_hourly \
                       (LIKE public.tenant_usage_hourly INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.endpoint_usage_hourly \
                       (LIKE public.endpoint_usage_hourly INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.projector_checkpoints \
                       (LIKE public.projector_checkpoints INCLUDING ALL); \
                     CREATE TABLE {SCHEMA}.projector_dead_letters \
                       (LIKE public.projector_dead_letters INCLUDING ALL);"
                )
                .as_str(),
            )
            .await?;
        sqlx::query(&format!(
            "INSERT INTO {SCHEMA}.projector_checkpoints (projector, stream_sequence, updated_at) \
             VALUES ($1, $2, now())"
        ))
        .bind(&self.checkpoint)
        .bind(first.saturating_sub(1) as i64)
        .execute(&mut *connection)
        .await?;
        let options = (*self.pool.connect_options())
            .clone()
            .options([("search_path", SCHEMA)]);
        Ok(PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?)
    }

    /// Applies the log to the copy after `applied` through `target`; returns where it got.
    async fn apply_through(
        &self,
        copy: &PgPool,
        applied: u64,
        target: u64,
        progress: &mut impl FnMut(Progress),
    ) -> Result<u64, ProjectorError> {
        apply_log_through(
            &self.log_stream,
            "",
            applied,
            target,
            BATCH,
            async |batch: &[Message], applied: u64| {
                let through = batch.last().map_or(applied, sequence);
                let applied = apply(copy, &self.checkpoint, batch, applied)
                    .await?
                    .max(through);
                progress(Progress {
                    applied_through: applied,
                    target,
                });
                Ok(applied)
            },
        )
        .await
    }

    /// Holds the live projector at its checkpoint, brings the copy exactly there and
    /// replaces the live rows with the copy's, in one transaction.
    async fn switch_over(
        &self,
        copy: &PgPool,
        first: u64,
        applied: u64,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Rebuilt, ProjectorError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projector_checkpoints (projector, stream_sequence, updated_at) \
             VALUES ($1, 0, now()) ON CONFLICT (projector) DO NOTHING",
        )
        .bind(&self.checkpoint)
        .execute(&mut *transaction)
        .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1 FOR UPDATE",
        )
        .bind(&self.checkpoint)
        .fetch_one(&mut *transaction)
        .await?;
        let live = live.max(0) as u64;
        let applied = self.apply_through(copy, applied, live, progress).await?;
        if applied < live {
            return Err(ProjectorError::Behind {
                postgres: applied,
                clickhouse: 0,
                through: live,
                last_attempt: 0,
            });
        }
        (&mut *transaction)
            .execute(
                format!(
                    "DELETE FROM attempts; DELETE FROM deliveries; DELETE FROM events; \
                     DELETE FROM endpoint_health; DELETE FROM replays; \
                     INSERT INTO events SELECT * FROM {SCHEMA}.events; \
                     INSERT INTO deliveries SELECT * FROM {SCHEMA}.deliveries; \
                     INSERT INTO attempts SELECT * FROM {SCHEMA}.attempts; \
                     INSERT INTO endpoint_health SELECT * FROM {SCHEMA}.endpoint_health; \
                     INSERT INTO replays SELECT * FROM {SCHEMA}.replays;"
                )
                .as_str(),
            )
            .await?;
        sqlx::query(&format!(
            "WITH gone AS (DELETE FROM projector_dead_letters WHERE projector = $1) \
             INSERT INTO projector_dead_letters \
             SELECT * FROM {SCHEMA}.projector_dead_letters WHERE projector = $1"
        ))
        .bind(&self.checkpoint)
        .execute(&mut *transaction)
        .await?;
        let (events, deliveries, attempts): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries), \
               (SELECT count(*) FROM attempts)",
        )
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Rebuilt {
            started_at_sequence: first,
            switched_at_sequence: live,
            events,
            deliveries,
            attempts,
        })
    }
}

async fn live_checkpoint(pool: &PgPool, checkpoint: &str) -> Result<u64, ProjectorError> {
    let live: Option<i64> = sqlx::query_scalar(
        "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
    )
    .bind(checkpoint)
    .fetch_optional(pool)
    .await?;
    Ok(live.unwrap_or(0).max(0) as u64)
}

/// The sequence the rebuild starts at.
pub(crate) async fn first_sequence(
    log_stream: &jetstream::stream::Stream,
    start_at: StartAt,
) -> Result<u64, ProjectorError> {
    let mut log_stream = log_stream.clone();
    let state = log_stream
        .info()
        .await
        .map_err(|error| ProjectorError::log("cannot read stream info", error))?
        .state
        .clone();
    match start_at {
        StartAt::Beginning if state.first_sequence > 1 => Err(ProjectorError::LogTrimmed {
            since: DateTime::<Utc>::UNIX_EPOCH,
            log_starts_at: DateTime::<Utc>::from_timestamp(
                state.first_timestamp.unix_timestamp(),
                0,
            )
            .unwrap_or_default(),
        }),
        StartAt::Beginning => Ok(1),
        StartAt::Sequence(sequence) => Ok(sequence.max(state.first_sequence).max(1)),
        StartAt::Time(at) => {
            let consumer = log_stream
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartTime {
                        start_time: time::OffsetDateTime::from_unix_timestamp(at.timestamp())
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                    },
                    ..Default::default()
                })
                .await
                .map_err(|error| ProjectorError::log("cannot create a log consumer", error))?;
            if consumer.cached_info().num_pending == 0 {
                return Ok(state.last_sequence + 1);
            }
            let mut messages = consumer
                .messages()
                .await
                .map_err(|error| ProjectorError::log("cannot read the log", error))?;
            match messages.next().await {
                Some(Ok(message)) => Ok(sequence(&message)),
                Some(Err(error)) => Err(ProjectorError::log("cannot read the log", error)),
                None => Ok(state.last_sequence + 1),
            }
        }
    }
}
