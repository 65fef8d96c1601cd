//! Applies attempt records to ClickHouse's raw attempt table, in few large inserts; the SLI
//! rollups follow by materialized views (`migrations/clickhouse/0003_sli_rollups.sql`).
//!
//! ClickHouse has no transactions, so exactly-once rests on these facts (ADR 0003, ADR 0012):
//! - Every row carries its log sequence, and an insert into a single partition is atomic. At
//!   start the projector asks for the highest sequence already stored and reads the log in
//!   order from just after it (no acknowledgements); batches are cut where the day (the
//!   partition) changes, so each insert lands whole or not at all.
//! - An insert whose answer was lost is sent again only once the projector has seen that it
//!   did not land. The server may still be running it, so first the projector waits until no
//!   insert of this database's projector runs there (each carries a query id saying whose it
//!   is); a process that died mid-insert is waited for the same way when the next one starts.
//! - The rollups' views write after `attempts`, each write atomic but not all of them
//!   together: an insert can be in `attempts` and missing from a rollup (the server stopped in
//!   between, or a view's write failed). Each rollup keeps the highest sequence it counted, so
//!   after an insert it could not confirm and at start the projector compares, for the day of
//!   the last insert, and feeds the rows a rollup lacks again from `attempts`, through that
//!   rollup's refill table. Only the last insert can be missing: nothing is inserted after
//!   an unconfirmed insert before this check.
//!
//! - Every write holds the ClickHouse write hold shared (`clickhouse_hold`), so that a
//!   rebuild's switch-over and reconciling can look at a read model nothing writes to.
//!
//! One instance is active at a time.

use crate::batch::{next_batch, read_from, sequence, Pulled};
use crate::clickhouse_hold::{Held, WriteHold};
use crate::error::ProjectorError;
use crate::lag::AppliedPosition;
use crate::reader_watch::ReaderWatch;
use async_nats::jetstream::{self, Message};
use clickhouse::Row;
use herald_schemas::{AttemptOutcome, AttemptRecorded, LogMessage};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A rollup fed by a materialized view on `attempts`, and the Null table whose own view feeds
/// rows to that rollup alone.
struct Rollup {
    table: &'static str,
    refill: &'static str,
}

const ROLLUPS: [Rollup; 2] = [
    Rollup {
        table: "sli_minute_rollup",
        refill: "sli_minute_refill",
    },
    Rollup {
        table: "sli_hour_rollup",
        refill: "sli_hour_refill",
    },
];

/// The columns of `attempts` the rollups aggregate (those of the refill tables).
const REFILL_COLUMNS: &str = "started_at, tenant_id, endpoint_id, event_type, outcome, \
                              error_class, latency_ms, end_to_end_ms, log_sequence";

const DAY_SECONDS: u32 = 86_400;

/// The row with the highest log sequence stored.
#[derive(Debug, Row, Deserialize)]
struct LastStored {
    last_sequence: u64,
    /// Seconds since the epoch: its insert was for this day.
    last_started_at: u32,
}

#[derive(Debug, Row, Serialize)]
pub struct AttemptRow {
    pub attempt_id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub trace_id: String,
    pub attempt_number: u32,
    pub event_accepted_at: u32,
    pub scheduled_at: u32,
    pub started_at: u32,
    pub finished_at: u32,
    pub http_status: u16,
    pub error_class: String,
    pub outcome: String,
    pub latency_ms: u32,
    pub end_to_end_ms: u32,
    pub log_sequence: u64,
    pub response_body_hash: String,
}

impl AttemptRow {
    pub fn from_attempt(attempt: &AttemptRecorded, log_sequence: u64) -> Self {
        let seconds =
            |at: chrono::DateTime<chrono::Utc>| at.timestamp().clamp(0, u32::MAX as i64) as u32;
        let end_to_end = (attempt.finished_at - attempt.event_accepted_at).num_milliseconds();
        Self {
            attempt_id: attempt.attempt_id.to_string(),
            event_id: attempt.event_id.to_string(),
            endpoint_id: attempt.endpoint_id.to_string(),
            tenant_id: attempt.tenant_id.to_string(),
            event_type: attempt.event_type.clone(),
            trace_id: attempt.trace_id.clone(),
            attempt_number: attempt.attempt_number,
            event_accepted_at: seconds(attempt.event_accepted_at),
            scheduled_at: seconds(attempt.scheduled_at),
            started_at: seconds(attempt.started_at),
            finished_at: seconds(attempt.finished_at),
            http_status: attempt.http_status.unwrap_or(0),
            error_class: attempt
                .error_class
                .map(|class| class.as_str())
                .unwrap_or("")
                .to_owned(),
            outcome: attempt.outcome.as_str().to_owned(),
            latency_ms: attempt.latency_ms,
            end_to_end_ms: if attempt.outcome == AttemptOutcome::Succeeded {
                end_to_end.clamp(0, u32::MAX as i64) as u32
            } else {
                0
            },
            log_sequence,
            response_body_hash: attempt.response_body_hash.clone().unwrap_or_default(),
        }
    }

    fn day(&self) -> u32 {
        self.started_at / 86_400
    }
}

pub struct ClickHouseProjection {
    pub client: clickhouse::Client,
    /// Where the write hold is kept.
    pub pool: PgPool,
    pub max_rows: usize,
    pub flush_after: Duration,
    /// Told each position reached (for the lag gauges).
    pub applied: AppliedPosition,
    /// Asks for a new log reader when the current one is stuck.
    pub reader: ReaderWatch,
}

/// Where a projector resumes and what it writes under.
struct Resumed {
    prefix: String,
    hold: WriteHold,
    applied_through: u64,
}

impl ClickHouseProjection {
    pub async fn run(
        self,
        log_stream: jetstream::stream::Stream,
        attempts_filter: String,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectorError> {
        while !shutdown.is_cancelled() {
            let resumed = match self.resume(&shutdown).await {
                Ok(Some(resumed)) => resumed,
                Ok(None) => return Ok(()),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "ClickHouse unavailable; waiting");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Resumed {
                prefix,
                hold,
                mut applied_through,
            } = resumed;
            // A log that cannot answer for now (a leader election) is waited for; a log that
            // ends before what was applied stops the projector.
            let checked = crate::batch::ensure_not_ahead(
                &log_stream,
                applied_through,
                "the ClickHouse projection",
            )
            .await;
            match checked {
                Ok(()) => {}
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "cannot check the log against the checkpoint; retrying");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error),
            }
            self.applied.set(applied_through);
            let start = applied_through + 1;
            let mut messages = match read_from(&log_stream, attempts_filter.clone(), start).await {
                Ok(messages) => messages,
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "cannot read the log; retrying");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            loop {
                let pulled = next_batch(
                    &mut messages,
                    self.max_rows,
                    crate::batch::MAX_BATCH_BYTES,
                    self.flush_after,
                    &shutdown,
                    &self.reader,
                )
                .await;
                let batch = match pulled {
                    Pulled::Batch(batch) => batch,
                    Pulled::Interrupted => break,
                    Pulled::Shutdown => return Ok(()),
                };
                let rows = rows_after(&batch, applied_through);
                for run in runs_by_day(&rows) {
                    if !self.insert_once(run, &prefix, &hold, &shutdown).await? {
                        return Ok(());
                    }
                }
                if let Some(last) = batch.last() {
                    applied_through = applied_through.max(sequence(last));
                    self.applied.set(applied_through);
                }
            }
        }
        Ok(())
    }

    /// Where to resume: the query id prefix of this projector's inserts, its write hold and
    /// the log sequence applied through. None when shut down first.
    async fn resume(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Resumed>, ProjectorError> {
        let database = current_database(&self.client).await?;
        let prefix = insert_query_id_prefix(&database);
        let hold = WriteHold::for_database(self.pool.clone(), &database);
        let Some(held) = hold_shared(&hold, shutdown).await? else {
            return Ok(None);
        };
        let settled = self.settle(&prefix, shutdown).await;
        held.release().await;
        Ok(settled?.map(|applied_through| Resumed {
            prefix,
            hold,
            applied_through,
        }))
    }

    /// Inserts one run of rows so that it is stored once: after a failure it is sent again
    /// only when it is known not to have landed. False when shut down first.
    async fn insert_once(
        &self,
        run: &[AttemptRow],
        prefix: &str,
        hold: &WriteHold,
        shutdown: &CancellationToken,
    ) -> Result<bool, ProjectorError> {
        if run.is_empty() {
            return Ok(true);
        }
        let Some(held) = hold_shared(hold, shutdown).await? else {
            return Ok(false);
        };
        let inserted = self.insert_once_held(run, prefix, shutdown).await;
        held.release().await;
        inserted
    }

    async fn insert_once_held(
        &self,
        run: &[AttemptRow],
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> Result<bool, ProjectorError> {
        let Some(last) = run.last() else {
            return Ok(true);
        };
        let mut delay = Duration::from_millis(200);
        loop {
            match self.insert(run, prefix).await {
                Ok(()) => return Ok(true),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, rows = run.len(), "ClickHouse insert failed; retrying");
                }
                Err(error) => return Err(error),
            }
            // A failed insert may still have landed (the answer was lost, or the server died
            // after committing), in `attempts` alone or in the rollups too: inserting it
            // again would count every row twice, so look until ClickHouse answers.
            loop {
                if pause(shutdown, delay).await {
                    return Ok(false);
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                match self.settle(prefix, shutdown).await {
                    Ok(Some(stored)) if stored >= last.log_sequence => return Ok(true),
                    Ok(Some(_)) => break,
                    Ok(None) => return Ok(false),
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, "cannot tell whether the insert landed; asking again");
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }

    /// Once no insert of ours runs on the server any more: the highest log sequence stored
    /// (every message up to it is applied), with the rollups completed up to it. None when
    /// shut down first.
    #[tracing::instrument(skip_all)]
    async fn settle(
        &self,
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<u64>, ProjectorError> {
        if !wait_for_running_inserts(&self.client, prefix, shutdown).await? {
            return Ok(None);
        }
        let last = self
            .client
            .query(
                "SELECT max(log_sequence) AS last_sequence, \
                 toUInt32(argMax(started_at, log_sequence)) AS last_started_at FROM attempts",
            )
            .fetch_one::<LastStored>()
            .await?;
        self.complete_rollups(&last, prefix).await?;
        Ok(Some(last.last_sequence))
    }

    /// Feeds each rollup the rows of the last insert into `attempts` that it did not count.
    async fn complete_rollups(
        &self,
        last: &LastStored,
        prefix: &str,
    ) -> Result<(), ProjectorError> {
        if last.last_sequence == 0 {
            return Ok(());
        }
        let day_start = last.last_started_at - last.last_started_at % DAY_SECONDS;
        let day_end = day_start.saturating_add(DAY_SECONDS);
        for rollup in &ROLLUPS {
            // A bucket may start up to an hour before its rows (a server time zone with a
            // half-hour offset), never after.
            let counted = self
                .client
                .query(&format!(
                    "SELECT maxMerge(log_sequence_max_state) FROM {} \
                     WHERE period_start >= toDateTime(?) AND period_start < toDateTime(?)",
                    rollup.table
                ))
                .bind(day_start.saturating_sub(3600))
                .bind(day_end)
                .fetch_one::<u64>()
                .await?;
            if counted >= last.last_sequence {
                continue;
            }
            tracing::warn!(
                rollup = rollup.table,
                counted_through = counted,
                stored_through = last.last_sequence,
                "a rollup missed the last insert into attempts; feeding it those rows again"
            );
            self.client
                .query(&format!(
                    "INSERT INTO {} ({REFILL_COLUMNS}) SELECT {REFILL_COLUMNS} FROM attempts \
                     WHERE started_at >= toDateTime(?) AND started_at < toDateTime(?) \
                     AND log_sequence > ?",
                    rollup.refill
                ))
                .bind(day_start)
                .bind(day_end)
                .bind(counted)
                .with_setting(
                    "query_id",
                    format!("{prefix}refill-{}-{}", rollup.table, last.last_sequence),
                )
                .execute()
                .await?;
        }
        Ok(())
    }

    /// Inserts one run of rows (one partition) in one insert, under a query id that says whose
    /// insert it is.
    #[tracing::instrument(
        skip_all,
        fields(
            rows = rows.len(),
            first_sequence = rows.first().map_or(0, |row| row.log_sequence),
            last_sequence = rows.last().map_or(0, |row| row.log_sequence),
        )
    )]
    async fn insert(&self, rows: &[AttemptRow], prefix: &str) -> Result<(), ProjectorError> {
        insert_attempts(&self.client, rows, prefix).await
    }
}

/// Inserts rows into `attempts` in one insert, under a query id that says whose it is.
pub(crate) async fn insert_attempts(
    client: &clickhouse::Client,
    rows: &[AttemptRow],
    prefix: &str,
) -> Result<(), ProjectorError> {
    let first = rows.first().map_or(0, |row| row.log_sequence);
    let last = rows.last().map_or(0, |row| row.log_sequence);
    let mut insert = client
        .insert::<AttemptRow>("attempts")
        .await?
        .with_setting("query_id", format!("{prefix}{first}-{last}"));
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(())
}

pub(crate) async fn current_database(
    client: &clickhouse::Client,
) -> Result<String, ProjectorError> {
    Ok(client
        .query("SELECT currentDatabase()")
        .fetch_one::<String>()
        .await?)
}

/// The start of the query id of every insert into `database`'s attempts: it names the
/// database, so that the inserts of another installation on the same server are not waited
/// for.
pub(crate) fn insert_query_id_prefix(database: &str) -> String {
    format!("herald-attempts-{database}-")
}

/// Waits until the server runs no insert whose query id starts with `prefix`: one whose
/// answer was lost, or whose process died, may still be writing. False when shut down first.
pub(crate) async fn wait_for_running_inserts(
    client: &clickhouse::Client,
    prefix: &str,
    shutdown: &CancellationToken,
) -> Result<bool, ProjectorError> {
    let mut told = false;
    loop {
        let running = client
            .query("SELECT count() FROM system.processes WHERE startsWith(query_id, ?)")
            .bind(prefix)
            .fetch_one::<u64>()
            .await?;
        if running == 0 {
            return Ok(true);
        }
        if !told {
            tracing::info!(
                running,
                "an earlier insert still runs in ClickHouse; waiting"
            );
            told = true;
        }
        if pause(shutdown, Duration::from_millis(100)).await {
            return Ok(false);
        }
    }
}

/// Takes the write hold shared, waiting while Postgres cannot be reached. None when shut
/// down first.
async fn hold_shared(
    hold: &WriteHold,
    shutdown: &CancellationToken,
) -> Result<Option<Held>, ProjectorError> {
    loop {
        let taken = tokio::select! {
            taken = hold.shared() => taken,
            () = shutdown.cancelled() => return Ok(None),
        };
        match taken {
            Ok(held) => return Ok(Some(held)),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "cannot take the ClickHouse write hold in Postgres; waiting");
                if pause(shutdown, Duration::from_secs(1)).await {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

pub(crate) fn rows_after(batch: &[Message], applied_through: u64) -> Vec<AttemptRow> {
    batch
        .iter()
        .filter_map(|message| {
            let sequence = sequence(message);
            if sequence <= applied_through {
                return None;
            }
            match LogMessage::decode(&message.payload) {
                Ok(LogMessage::AttemptRecorded(attempt)) => {
                    Some(AttemptRow::from_attempt(&attempt, sequence))
                }
                Ok(_) => None,
                Err(error) => {
                    tracing::error!(sequence, %error, "attempt record cannot be decoded; skipped");
                    None
                }
            }
        })
        .collect()
}

/// Consecutive rows of the same day, so that each insert touches one partition.
pub(crate) fn runs_by_day(rows: &[AttemptRow]) -> impl Iterator<Item = &[AttemptRow]> {
    rows.chunk_by(|first, second| first.day() == second.day())
}

/// Sleeps unless shut down first; true when shut down.
async fn pause(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown.cancelled() => true,
    }
}
