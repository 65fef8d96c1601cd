//! Applies attempt records to ClickHouse's raw attempt table, in few large inserts.
//!
//! ClickHouse has no transactions, so exactly-once rests on two facts: every row carries its
//! log sequence, and an insert into a single partition is atomic. At start the projector
//! asks for the highest sequence already stored and reads the log in order from just after
//! it (no acknowledgements); batches are cut where the day (the partition) changes, so each
//! insert lands whole or not at all.
//! One instance is active at a time.

use crate::batch::{next_batch, read_from, sequence, Pulled};
use crate::error::ProjectorError;
use async_nats::jetstream::{self, Message};
use clickhouse::Row;
use herald_schemas::{AttemptOutcome, AttemptRecorded, LogMessage};
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    pub max_rows: usize,
    pub flush_after: Duration,
}

impl ClickHouseProjection {
    pub async fn run(
        self,
        log_stream: jetstream::stream::Stream,
        attempts_filter: String,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectorError> {
        while !shutdown.is_cancelled() {
            let mut applied_through = match self.stored_high_water_mark().await {
                Ok(sequence) => sequence,
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "ClickHouse unavailable; waiting");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            // Any error here stops the projector, a log that cannot be read for now included.
            crate::batch::ensure_not_ahead(
                &log_stream,
                applied_through,
                "the ClickHouse projection",
            )
            .await?;
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
                let pulled =
                    next_batch(&mut messages, self.max_rows, self.flush_after, &shutdown).await;
                let batch = match pulled {
                    Pulled::Batch(batch) => batch,
                    Pulled::Interrupted => break,
                    Pulled::Shutdown => return Ok(()),
                };
                let rows = rows_after(&batch, applied_through);
                let mut delay = Duration::from_millis(200);
                for run in runs_by_day(&rows) {
                    while let Err(error) = self.insert(run).await {
                        if !error.is_retryable() {
                            return Err(error);
                        }
                        tracing::warn!(%error, rows = run.len(), "ClickHouse insert failed; retrying");
                        if pause(&shutdown, delay).await {
                            return Ok(());
                        }
                        delay = (delay * 2).min(Duration::from_secs(10));
                        // A failed insert may still have landed (the answer was lost, or the
                        // server died after committing): inserting it again would count
                        // every row twice.
                        if self.landed(run).await {
                            break;
                        }
                    }
                }
                if let Some(last) = batch.last() {
                    applied_through = applied_through.max(sequence(last));
                }
            }
        }
        Ok(())
    }

    /// The highest log sequence stored: every message up to it is applied.
    #[tracing::instrument(skip_all)]
    async fn stored_high_water_mark(&self) -> Result<u64, ProjectorError> {
        let sequence = self
            .client
            .query("SELECT max(log_sequence) FROM attempts")
            .fetch_one::<u64>()
            .await?;
        Ok(sequence)
    }

    /// Whether a run of rows whose insert reported failure is stored all the same (one insert
    /// into one partition is all or nothing, so its last row tells).
    async fn landed(&self, run: &[AttemptRow]) -> bool {
        let Some(last) = run.last() else { return true };
        matches!(self.stored_high_water_mark().await, Ok(stored) if stored >= last.log_sequence)
    }

    /// Inserts one run of rows (one partition) in one insert.
    #[tracing::instrument(
        skip_all,
        fields(
            rows = rows.len(),
            first_sequence = rows.first().map_or(0, |row| row.log_sequence),
            last_sequence = rows.last().map_or(0, |row| row.log_sequence),
        )
    )]
    async fn insert(&self, rows: &[AttemptRow]) -> Result<(), ProjectorError> {
        let mut insert = self.client.insert::<AttemptRow>("attempts").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

fn rows_after(batch: &[Message], applied_through: u64) -> Vec<AttemptRow> {
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
fn runs_by_day(rows: &[AttemptRow]) -> impl Iterator<Item = &[AttemptRow]> {
    rows.chunk_by(|first, second| first.day() == second.day())
}

/// Sleeps unless shut down first; true when shut down.
async fn pause(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown.cancelled() => true,
    }
}
