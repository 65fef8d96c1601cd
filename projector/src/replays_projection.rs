//! The `replays` table: one row per replay from the log (ADR 0014), from its
//! `replay.started.v1`, `replay.progressed.v1` and `replay.finished.v1`. Applied in the
//! Postgres projector's batch transaction, with its checkpoint, so each message takes effect
//! once. The query API reads the table (`query/src/log_replay.rs`).

use herald_schemas::{LogMessage, ReplayFinished, ReplayProgressed, ReplayStarted};
use sqlx::{Postgres, Transaction};

/// The replay messages of one batch, in log order.
#[derive(Default)]
pub struct ReplayChanges {
    changes: Vec<Change>,
}

enum Change {
    Started(ReplayStarted),
    Progressed(ReplayProgressed),
    Finished(ReplayFinished),
}

impl ReplayChanges {
    /// Keeps `message` if it is about a replay from the log.
    pub fn record(&mut self, message: LogMessage) {
        match message {
            LogMessage::ReplayStarted(started) => self.changes.push(Change::Started(started)),
            LogMessage::ReplayProgressed(progressed) => {
                self.changes.push(Change::Progressed(progressed))
            }
            LogMessage::ReplayFinished(finished) => self.changes.push(Change::Finished(finished)),
            _ => {}
        }
    }
}

/// Writes the batch's replay changes. Replays are few and their messages paced (one progress
/// a second at most per replay), so one statement per message is enough.
#[tracing::instrument(level = "debug", skip_all, fields(changes = changes.changes.len()))]
pub async fn apply(
    transaction: &mut Transaction<'_, Postgres>,
    changes: ReplayChanges,
) -> Result<(), sqlx::Error> {
    for change in changes.changes {
        match change {
            Change::Started(started) => insert(transaction, &started).await?,
            Change::Progressed(progressed) => {
                sqlx::query(
                    "UPDATE replays SET events_replayed = $3, deliveries_scheduled = $4, \
                     through_sequence = $5, updated_at = $6 \
                     WHERE replay_id = $1 AND tenant_id = $2 AND status = 'running' \
                       AND through_sequence <= $5",
                )
                .bind(progressed.replay_id.as_uuid())
                .bind(progressed.tenant_id.as_uuid())
                .bind(progressed.events_replayed as i64)
                .bind(progressed.deliveries_scheduled as i64)
                .bind(progressed.through_sequence as i64)
                .bind(progressed.progressed_at)
                .execute(&mut **transaction)
                .await?;
            }
            Change::Finished(finished) => {
                sqlx::query(
                    "UPDATE replays SET status = 'finished', events_replayed = $3, \
                     deliveries_scheduled = $4, through_sequence = GREATEST(through_sequence, $5), \
                     updated_at = $6, finished_at = $6 \
                     WHERE replay_id = $1 AND tenant_id = $2 AND status = 'running'",
                )
                .bind(finished.replay_id.as_uuid())
                .bind(finished.tenant_id.as_uuid())
                .bind(finished.events_replayed as i64)
                .bind(finished.deliveries_scheduled as i64)
                .bind(finished.through_sequence as i64)
                .bind(finished.finished_at)
                .execute(&mut **transaction)
                .await?;
            }
        }
    }
    Ok(())
}

async fn insert(
    transaction: &mut Transaction<'_, Postgres>,
    started: &ReplayStarted,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replays (replay_id, tenant_id, mode, since, until, endpoint_id, event_types, \
           events_per_second, status, started_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, $9) \
         ON CONFLICT (replay_id) DO NOTHING",
    )
    .bind(started.replay_id.as_uuid())
    .bind(started.tenant_id.as_uuid())
    .bind(started.mode.as_str())
    .bind(started.since)
    .bind(started.until)
    .bind(started.endpoint_id.map(|endpoint_id| endpoint_id.as_uuid()))
    .bind(&started.event_types)
    .bind(started.events_per_second as i32)
    .bind(started.started_at)
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}
