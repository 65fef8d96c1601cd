//! Hourly housekeeping: daily attempt partitions exist ahead of time in Postgres, history
//! older than the retention is dropped (Postgres attempt partitions, finished events with
//! their payloads and deliveries, dead letters; in ClickHouse the days of the raw attempts
//! and of the minute rollup, since 18.16 has no TTL), and expired idempotency keys are
//! forgotten. The hour rollup is kept for ever.

use crate::error::ProjectorError;
use chrono::Utc;
use herald_schemas::EventStatus;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Finished events (and their deliveries) are deleted this many at a time, so no statement
/// holds its locks long.
const DELETE_CHUNK: i64 = 5_000;

/// ClickHouse tables partitioned by day (`toYYYYMMDD`) that keep `retention_days` of history.
const DAILY_CLICKHOUSE_TABLES: [&str; 2] = ["attempts", "sli_minute_rollup"];

pub struct Maintenance {
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    pub retention_days: u32,
    pub idempotency_retention_hours: u32,
}

impl Maintenance {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.run_once().await {
                tracing::warn!(%error, "maintenance failed; will try again");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    #[tracing::instrument(name = "maintenance", skip_all)]
    pub async fn run_once(&self) -> Result<(), ProjectorError> {
        let today = Utc::now().date_naive();
        sqlx::query("SELECT herald_ensure_attempt_partitions($1, 8)")
            .bind(today - chrono::Days::new(1))
            .execute(&self.pool)
            .await?;
        let keep_from = today - chrono::Days::new(u64::from(self.retention_days));
        let dropped: i32 = sqlx::query_scalar("SELECT herald_drop_attempt_partitions_before($1)")
            .bind(keep_from)
            .fetch_one(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        )
        .bind(self.idempotency_retention_hours.max(24) as i32)
        .execute(&self.pool)
        .await?;
        let events_deleted = self.delete_finished_events(keep_from).await?;
        sqlx::query("DELETE FROM projector_dead_letters WHERE recorded_at < $1")
            .bind(keep_from)
            .execute(&self.pool)
            .await?;
        let mut clickhouse_dropped = 0;
        for table in DAILY_CLICKHOUSE_TABLES {
            let old_partitions: Vec<String> = self
                .clickhouse
                .query("SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = ? AND active AND partition < ?")
                .bind(table)
                .bind(keep_from.format("%Y%m%d").to_string())
                .fetch_all::<String>()
                .await?;
            for partition in &old_partitions {
                if partition.len() == 8 && partition.bytes().all(|b| b.is_ascii_digit()) {
                    self.clickhouse
                        .query(&format!("ALTER TABLE {table} DROP PARTITION {partition}"))
                        .execute()
                        .await?;
                    clickhouse_dropped += 1;
                }
            }
        }
        tracing::info!(
            postgres_partitions_dropped = dropped,
            events_deleted,
            clickhouse_partitions_dropped = clickhouse_dropped,
            "maintenance done"
        );
        Ok(())
    }

    /// Deletes events accepted before `keep_from` whose deliveries are all over (delivered or
    /// failed), with their deliveries; an event still being delivered is kept whatever its
    /// age. Returns how many events were deleted.
    async fn delete_finished_events(
        &self,
        keep_from: chrono::NaiveDate,
    ) -> Result<u64, ProjectorError> {
        let finished: Vec<&str> = [EventStatus::Delivered, EventStatus::Failed]
            .iter()
            .map(|status| status.as_str())
            .collect();
        let mut deleted = 0;
        loop {
            let chunk = sqlx::query(
                "WITH old AS ( \
                   SELECT event_id FROM events \
                   WHERE accepted_at < $1 AND status = ANY($2) LIMIT $3), \
                 gone AS (DELETE FROM deliveries WHERE event_id IN (SELECT event_id FROM old)) \
                 DELETE FROM events WHERE event_id IN (SELECT event_id FROM old)",
            )
            .bind(keep_from)
            .bind(&finished)
            .bind(DELETE_CHUNK)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += chunk;
            if chunk < DELETE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }
}
