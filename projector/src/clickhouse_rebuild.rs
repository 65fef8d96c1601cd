//! `herald rebuild --target clickhouse`: rebuilds ClickHouse's read model (`attempts` and the
//! SLI rollups `sli_minute_rollup` and `sli_hour_rollup`) from the log while live traffic goes
//! on, then switches over partition by partition (ADR 0015).
//!
//! The copy is a second database made by the same migrations as the live one, so its tables,
//! materialized views and refill tables are the live ones', and rows inserted into its
//! `attempts` are counted in its rollups exactly as live rows are. Rebuilding from a sequence
//! after the first keeps what the live view holds before it: its `attempts` rows (inserted
//! into the copy, so the copy's views count them) and, for periods older than the raw rows
//! kept, its rollup rows as they are. Then the log from that sequence on is applied; once the
//! copy is within reach of the live projector, the write hold is taken (the live projector
//! waits at its next insert), the copy is brought exactly to where the live view is, and each
//! live partition is replaced by the copy's (`ALTER TABLE … REPLACE PARTITION … FROM`, on
//! ClickHouse 18.16 and current ones alike) or dropped if the copy has none.

use crate::batch::{apply_log_through, sequence};
use crate::clickhouse_hold::WriteHold;
use crate::clickhouse_projection::{
    insert_attempts, insert_query_id_prefix, rows_after, runs_by_day, wait_for_running_inserts,
};
use crate::error::ProjectorError;
use crate::rebuild::{first_sequence, Progress, StartAt};
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;

/// The copy switches over once it is this close to the live projector (in log sequences).
const CLOSE_ENOUGH: u64 = 5_000;
const BATCH: usize = 20_000;
const DAY_SECONDS: u32 = 86_400;

/// The tables the read model is made of, each replaced partition by partition. `attempts`
/// first: a reader meanwhile sees raw rows and rollups of different ages for a moment, never
/// a partition half replaced.
const TABLES: [&str; 3] = ["attempts", "sli_minute_rollup", "sli_hour_rollup"];

/// The rollups: rows kept from the live view for periods before the raw rows kept.
const ROLLUPS: [&str; 2] = ["sli_minute_rollup", "sli_hour_rollup"];

/// What a finished ClickHouse rebuild did.
#[derive(Debug)]
pub struct RebuiltClickHouse {
    /// The log sequence the copy applied the log from; rows before it were kept.
    pub started_at_sequence: u64,
    pub switched_at_sequence: u64,
    /// Attempt rows kept from the live view (before `started_at_sequence`).
    pub attempts_kept: u64,
    /// Attempt rows in the view after the switch.
    pub attempts: u64,
    /// Partitions replaced and dropped in the live tables.
    pub partitions_replaced: usize,
    pub partitions_dropped: usize,
}

pub struct ClickHouseRebuild {
    pub log_stream: jetstream::stream::Stream,
    /// The subjects attempt records are appended under (`Namespace::attempts_filter`).
    pub attempts_filter: String,
    /// The live read model's database.
    pub live: clickhouse::Client,
    pub live_database: String,
    /// An empty database migrated like the live one, where the copy is built.
    pub copy: clickhouse::Client,
    pub copy_database: String,
    pub hold: WriteHold,
}

impl ClickHouseRebuild {
    pub async fn run(
        &self,
        start_at: StartAt,
        mut progress: impl FnMut(Progress),
    ) -> Result<RebuiltClickHouse, ProjectorError> {
        let first = first_sequence(&self.log_stream, start_at).await?;
        // The live view holds every attempt record through its last stored sequence, and
        // those only: keeping what it holds before `from` keeps nothing it may still lack.
        let live_last = self.last_sequence(&self.live).await?;
        let from = first.min(live_last + 1).max(1);
        let attempts_kept = if from > 1 {
            self.keep_history(from).await?
        } else {
            0
        };
        let mut applied = from - 1;
        loop {
            let target = self.last_sequence(&self.live).await?;
            applied = self.apply_through(applied, target, &mut progress).await?;
            let now = self.last_sequence(&self.live).await?;
            if now.saturating_sub(applied) <= CLOSE_ENOUGH {
                break;
            }
        }
        let (switched_at_sequence, partitions_replaced, partitions_dropped) =
            self.switch_over(applied, &mut progress).await?;
        let attempts = self
            .live
            .query("SELECT count() FROM attempts")
            .fetch_one::<u64>()
            .await?;
        Ok(RebuiltClickHouse {
            started_at_sequence: from,
            switched_at_sequence,
            attempts_kept,
            attempts,
            partitions_replaced,
            partitions_dropped,
        })
    }

    async fn last_sequence(&self, client: &clickhouse::Client) -> Result<u64, ProjectorError> {
        Ok(client
            .query("SELECT max(log_sequence) FROM attempts")
            .fetch_one::<u64>()
            .await?)
    }

    /// Copies what the live view counted before log sequence `from`: its raw rows (counted
    /// in the copy's rollups by the copy's views as they arrive), and the rollup rows of
    /// periods older than any raw row kept, which cannot be counted again. Returns the raw
    /// rows kept.
    async fn keep_history(&self, from: u64) -> Result<u64, ProjectorError> {
        let (live, copy) = (&self.live_database, &self.copy_database);
        self.copy
            .query(&format!(
                "INSERT INTO {copy}.attempts SELECT * FROM {live}.attempts WHERE log_sequence < ?"
            ))
            .bind(from)
            .execute()
            .await?;
        let (kept, oldest): (u64, u32) = self
            .copy
            .query("SELECT count(), toUInt32(min(started_at)) FROM attempts")
            .fetch_one::<(u64, u32)>()
            .await?;
        // Raw rows are dropped a day (a partition) at a time: from the first day of those
        // kept on, every period is counted again from raw rows; before it only the rollups
        // know what happened.
        let raw_rows_from = if kept == 0 {
            u32::MAX
        } else {
            oldest - oldest % DAY_SECONDS
        };
        for rollup in ROLLUPS {
            let counted_through = self
                .live
                .query(&format!(
                    "SELECT maxMerge(log_sequence_max_state) FROM {rollup} \
                     WHERE period_start < toDateTime(?)"
                ))
                .bind(raw_rows_from)
                .fetch_one::<u64>()
                .await?;
            if counted_through >= from {
                return Err(ProjectorError::CannotKeepHistory {
                    table: rollup,
                    raw_rows_from: DateTime::<Utc>::from_timestamp(i64::from(raw_rows_from), 0)
                        .unwrap_or_default(),
                    counted_through,
                    from,
                });
            }
            self.copy
                .query(&format!(
                    "INSERT INTO {copy}.{rollup} SELECT * FROM {live}.{rollup} \
                     WHERE period_start < toDateTime(?)"
                ))
                .bind(raw_rows_from)
                .execute()
                .await?;
        }
        Ok(kept)
    }

    /// Applies the attempt records after `applied` through `target` to the copy; returns
    /// where it got.
    async fn apply_through(
        &self,
        applied: u64,
        target: u64,
        progress: &mut impl FnMut(Progress),
    ) -> Result<u64, ProjectorError> {
        let prefix = insert_query_id_prefix(&self.copy_database);
        apply_log_through(
            &self.log_stream,
            &self.attempts_filter,
            applied,
            target,
            BATCH,
            async |batch: &[Message], applied: u64| {
                let rows = rows_after(batch, applied);
                // A failed insert is not tried again: its answer may have been lost after it
                // landed. The rebuild stops instead and the copy is thrown away.
                for run in runs_by_day(&rows) {
                    insert_attempts(&self.copy, run, &prefix).await?;
                }
                let through = batch.last().map_or(applied, sequence);
                progress(Progress {
                    applied_through: through,
                    target,
                });
                Ok(through)
            },
        )
        .await
    }

    /// Holds the live projector, brings the copy exactly to the live view's last sequence and
    /// replaces the live partitions with the copy's. Returns that sequence and the partitions
    /// replaced and dropped.
    async fn switch_over(
        &self,
        applied: u64,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(u64, usize, usize), ProjectorError> {
        let held = self.hold.exclusive().await?;
        let switched = self.switch_over_held(applied, progress).await;
        held.release().await;
        switched
    }

    async fn switch_over_held(
        &self,
        applied: u64,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(u64, usize, usize), ProjectorError> {
        // A projector that died holding the hold may have left an insert running.
        let live_prefix = insert_query_id_prefix(&self.live_database);
        wait_for_running_inserts(&self.live, &live_prefix, &CancellationToken::new()).await?;
        let live_last = self.last_sequence(&self.live).await?;
        let applied = self.apply_through(applied, live_last, progress).await?;
        if applied < live_last {
            return Err(ProjectorError::Behind {
                postgres: 0,
                clickhouse: applied,
                through: live_last,
                last_attempt: live_last,
            });
        }
        let (mut replaced, mut dropped) = (0, 0);
        for table in TABLES {
            let live_partitions = self.partitions(&self.live_database, table).await?;
            let copy_partitions = self.partitions(&self.copy_database, table).await?;
            for partition in &copy_partitions {
                self.live
                    .query(&format!(
                        "ALTER TABLE {}.{table} REPLACE PARTITION ID ? FROM {}.{table}",
                        self.live_database, self.copy_database
                    ))
                    .bind(partition.as_str())
                    .execute()
                    .await?;
                replaced += 1;
            }
            for partition in live_partitions.difference(&copy_partitions) {
                self.live
                    .query(&format!(
                        "ALTER TABLE {}.{table} DROP PARTITION ID ?",
                        self.live_database
                    ))
                    .bind(partition.as_str())
                    .execute()
                    .await?;
                dropped += 1;
            }
        }
        Ok((live_last, replaced, dropped))
    }

    async fn partitions(
        &self,
        database: &str,
        table: &str,
    ) -> Result<BTreeSet<String>, ProjectorError> {
        let partitions = self
            .live
            .query(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = ? AND table = ? AND active",
            )
            .bind(database)
            .bind(table)
            .fetch_all::<String>()
            .await?;
        Ok(partitions.into_iter().collect())
    }
}
