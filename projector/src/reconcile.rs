//! `herald reconcile`: compares the log with both read models. The log is the source of
//! truth; every attempt record it holds from the hour of a given time on is counted per
//! tenant, endpoint, outcome and hour (of `started_at`, UTC), and so are the rows of Postgres
//! `attempts` and ClickHouse `attempts`, and the attempts ClickHouse's minute and hour SLI
//! rollups counted. Any count that differs is a difference.
//!
//! Live traffic goes on meanwhile: only log messages up to the stream's last sequence when
//! reconciling starts are counted (and only rows carrying such a sequence), after waiting for
//! both projections to have applied them. Rollups keep no sequence per attempt: ClickHouse is
//! counted under its write hold (the projector waits meanwhile), and what it stored after
//! that sequence is taken off the rollups' counts.

use crate::clickhouse_hold::WriteHold;
use crate::clickhouse_projection::{
    current_database, insert_query_id_prefix, wait_for_running_inserts,
};
use crate::error::ProjectorError;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self};
use chrono::{DateTime, TimeZone, Utc};
use clickhouse::Row;
use futures::StreamExt;
use herald_schemas::{LogMessage, Namespace};
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An attempt record is appended this long after it started at most (the longest request
/// plus the append): the log is read from this much before `since`.
const APPEND_MARGIN: chrono::Duration = chrono::Duration::hours(1);

/// What is counted: attempts of one endpoint with one outcome that started in one hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountKey {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub outcome: String,
    /// Start of the hour, seconds since the epoch (UTC).
    pub hour: i64,
}

impl fmt::Display for CountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hour = Utc
            .timestamp_opt(self.hour, 0)
            .single()
            .map(|at| at.format("%Y-%m-%dT%H:00Z").to_string())
            .unwrap_or_else(|| self.hour.to_string());
        write!(
            f,
            "tenant {} endpoint {} outcome {} hour {hour}",
            self.tenant_id, self.endpoint_id, self.outcome
        )
    }
}

pub type Counts = BTreeMap<CountKey, u64>;

/// What each view counted.
#[derive(Clone, Debug, Default)]
pub struct ViewCounts {
    pub postgres: Counts,
    pub clickhouse: Counts,
    pub minute_rollup: Counts,
    pub hour_rollup: Counts,
}

/// One count that is not the same in the log and every view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub key: CountKey,
    pub log: u64,
    pub postgres: u64,
    pub clickhouse: u64,
    pub minute_rollup: u64,
    pub hour_rollup: u64,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: log {}, postgres {}, clickhouse {}, clickhouse minute rollup {}, clickhouse hour \
             rollup {}",
            self.key,
            self.log,
            self.postgres,
            self.clickhouse,
            self.minute_rollup,
            self.hour_rollup
        )
    }
}

/// Every key whose count is not the same in the log and all views.
pub fn differences(log: &Counts, views: &ViewCounts) -> Vec<Difference> {
    let keys: BTreeSet<&CountKey> = log
        .keys()
        .chain(views.postgres.keys())
        .chain(views.clickhouse.keys())
        .chain(views.minute_rollup.keys())
        .chain(views.hour_rollup.keys())
        .collect();
    let count = |counts: &Counts, key: &CountKey| counts.get(key).copied().unwrap_or(0);
    keys.into_iter()
        .map(|key| Difference {
            key: key.clone(),
            log: count(log, key),
            postgres: count(&views.postgres, key),
            clickhouse: count(&views.clickhouse, key),
            minute_rollup: count(&views.minute_rollup, key),
            hour_rollup: count(&views.hour_rollup, key),
        })
        .filter(|difference| {
            [
                difference.postgres,
                difference.clickhouse,
                difference.minute_rollup,
                difference.hour_rollup,
            ]
            .into_iter()
            .any(|count| count != difference.log)
        })
        .collect()
}

/// What reconciling found.
#[derive(Debug)]
pub struct Reconciliation {
    pub since: DateTime<Utc>,
    /// The last log sequence counted.
    pub through_sequence: u64,
    pub attempts_in_log: u64,
    pub differences: Vec<Difference>,
}

pub struct Reconciler {
    pub log_stream: jetstream::stream::Stream,
    pub namespace: Namespace,
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    /// How long to wait for the projections to apply what the log holds.
    pub catch_up: Duration,
}

impl Reconciler {
    /// Counts from the start of the hour of `since`: the rollups cannot split an hour.
    pub async fn run(&self, since: DateTime<Utc>) -> Result<Reconciliation, ProjectorError> {
        let since = DateTime::<Utc>::from_timestamp(since.timestamp().div_euclid(3600) * 3600, 0)
            .unwrap_or(since);
        let mut log_stream = self.log_stream.clone();
        let state = log_stream
            .info()
            .await
            .map_err(|error| ProjectorError::log("cannot read stream info", error))?
            .state
            .clone();
        let through_sequence = state.last_sequence;
        let log_starts_at =
            DateTime::<Utc>::from_timestamp(state.first_timestamp.unix_timestamp(), 0)
                .unwrap_or(since);
        if state.first_sequence > 1 && log_starts_at > since - APPEND_MARGIN {
            return Err(ProjectorError::LogTrimmed {
                since,
                log_starts_at,
            });
        }
        let (log, last_attempt_sequence) = self.count_log(since, through_sequence).await?;
        self.wait_for_projections(through_sequence, last_attempt_sequence)
            .await?;
        let postgres = self.count_postgres(since, through_sequence).await?;
        let (clickhouse, minute_rollup, hour_rollup) =
            self.count_clickhouse_held(since, through_sequence).await?;
        let views = ViewCounts {
            postgres,
            clickhouse,
            minute_rollup,
            hour_rollup,
        };
        Ok(Reconciliation {
            since,
            through_sequence,
            attempts_in_log: log.values().sum(),
            differences: differences(&log, &views),
        })
    }

    /// Attempt records in the log that started at or after `since`, up to `through`; and the
    /// sequence of the last attempt record read.
    async fn count_log(
        &self,
        since: DateTime<Utc>,
        through: u64,
    ) -> Result<(Counts, u64), ProjectorError> {
        let mut counts = Counts::new();
        let mut last_attempt = 0;
        let start = since - APPEND_MARGIN;
        let consumer = self
            .log_stream
            .create_consumer(OrderedConfig {
                filter_subject: self.namespace.attempts_filter(),
                deliver_policy: DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp(start.timestamp())
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                },
                ..Default::default()
            })
            .await
            .map_err(|error| ProjectorError::log("cannot create a log consumer", error))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| ProjectorError::log("cannot read the log", error))?;
        while pending > 0 {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    return Err(ProjectorError::log("log reading interrupted", error))
                }
                None => break,
            };
            let Ok(info) = message.info() else { continue };
            pending = info.pending;
            if info.stream_sequence > through {
                break;
            }
            if let Ok(LogMessage::AttemptRecorded(attempt)) = LogMessage::decode(&message.payload) {
                last_attempt = info.stream_sequence;
                if attempt.started_at >= since {
                    let key = CountKey {
                        tenant_id: attempt.tenant_id.to_string(),
                        endpoint_id: attempt.endpoint_id.to_string(),
                        outcome: attempt.outcome.as_str().to_owned(),
                        hour: attempt.started_at.timestamp().div_euclid(3600) * 3600,
                    };
                    *counts.entry(key).or_default() += 1;
                }
            }
        }
        Ok((counts, last_attempt))
    }

    /// Waits until Postgres has applied the log through `through` and ClickHouse through the
    /// last attempt record up to it.
    async fn wait_for_projections(
        &self,
        through: u64,
        last_attempt: u64,
    ) -> Result<(), ProjectorError> {
        let deadline = tokio::time::Instant::now() + self.catch_up;
        loop {
            let postgres: Option<i64> = sqlx::query_scalar(
                "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
            )
            .bind(self.namespace.postgres_checkpoint())
            .fetch_optional(&self.pool)
            .await?;
            let postgres = postgres.unwrap_or(0).max(0) as u64;
            let clickhouse = self
                .clickhouse
                .query("SELECT max(log_sequence) FROM attempts")
                .fetch_one::<u64>()
                .await?;
            if postgres >= through && clickhouse >= last_attempt {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProjectorError::Behind {
                    postgres,
                    clickhouse,
                    through,
                    last_attempt,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn count_postgres(
        &self,
        since: DateTime<Utc>,
        through: u64,
    ) -> Result<Counts, ProjectorError> {
        let rows: Vec<(uuid::Uuid, uuid::Uuid, String, i64, i64)> = sqlx::query_as(
            "SELECT tenant_id, endpoint_id, outcome, \
               (floor(extract(epoch FROM started_at) / 3600) * 3600)::bigint AS hour, count(*) \
             FROM attempts WHERE started_at >= $1 AND log_sequence <= $2 \
             GROUP BY 1, 2, 3, 4",
        )
        .bind(since)
        .bind(through as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, endpoint_id, outcome, hour, count)| {
                let key = CountKey {
                    tenant_id: tenant_id.to_string(),
                    endpoint_id: endpoint_id.to_string(),
                    outcome,
                    hour,
                };
                (key, count.max(0) as u64)
            })
            .collect())
    }

    /// ClickHouse's raw rows and both rollups, counted while the projector writes nothing.
    async fn count_clickhouse_held(
        &self,
        since: DateTime<Utc>,
        through: u64,
    ) -> Result<(Counts, Counts, Counts), ProjectorError> {
        let database = current_database(&self.clickhouse).await?;
        let held = WriteHold::for_database(self.pool.clone(), &database)
            .exclusive()
            .await?;
        let counted = self.count_clickhouse(&database, since, through).await;
        held.release().await;
        counted
    }

    async fn count_clickhouse(
        &self,
        database: &str,
        since: DateTime<Utc>,
        through: u64,
    ) -> Result<(Counts, Counts, Counts), ProjectorError> {
        // A projector that died holding the hold may have left an insert running.
        wait_for_running_inserts(
            &self.clickhouse,
            &insert_query_id_prefix(database),
            &CancellationToken::new(),
        )
        .await?;
        let since = since.timestamp().clamp(0, u32::MAX as i64) as u32;
        // Hours from the epoch seconds, not `toStartOfHour`, which follows the server's
        // time zone.
        let raw = self
            .clickhouse
            .query(
                "SELECT tenant_id, endpoint_id, outcome, \
                   toUInt64(intDiv(toUInt32(started_at), 3600) * 3600) AS hour, \
                   countIf(log_sequence <= ?) AS attempts, countIf(log_sequence > ?) AS later \
                 FROM attempts WHERE toUInt32(started_at) >= ? \
                 GROUP BY tenant_id, endpoint_id, outcome, hour",
            )
            .bind(through)
            .bind(through)
            .bind(since)
            .fetch_all::<CountRow>()
            .await?;
        let rollup = |table: &str| {
            format!(
                "SELECT tenant_id, endpoint_id, outcome, \
                   toUInt64(intDiv(toUInt32(period_start), 3600) * 3600) AS hour, \
                   countMerge(attempts_state) AS attempts, toUInt64(0) AS later \
                 FROM {table} WHERE toUInt32(period_start) >= ? \
                 GROUP BY tenant_id, endpoint_id, outcome, hour"
            )
        };
        let minute = self
            .clickhouse
            .query(&rollup("sli_minute_rollup"))
            .bind(since)
            .fetch_all::<CountRow>()
            .await?;
        let hour = self
            .clickhouse
            .query(&rollup("sli_hour_rollup"))
            .bind(since)
            .fetch_all::<CountRow>()
            .await?;
        // The rollups counted every row stored; those after `through` are not the log's.
        let up_to_through = |rollup: Vec<CountRow>| -> Counts {
            let mut counts: Counts = rollup
                .into_iter()
                .map(|row| (row.key(), row.attempts))
                .collect();
            for row in &raw {
                if row.later > 0 {
                    let count = counts.entry(row.key()).or_default();
                    *count = count.saturating_sub(row.later);
                }
            }
            counts.retain(|_, count| *count > 0);
            counts
        };
        let clickhouse = raw
            .iter()
            .filter(|row| row.attempts > 0)
            .map(|row| (row.key(), row.attempts))
            .collect();
        Ok((clickhouse, up_to_through(minute), up_to_through(hour)))
    }
}

#[derive(Row, Deserialize)]
struct CountRow {
    tenant_id: String,
    endpoint_id: String,
    outcome: String,
    hour: u64,
    attempts: u64,
    /// Rows stored after the last sequence counted (raw rows only).
    later: u64,
}

impl CountRow {
    fn key(&self) -> CountKey {
        CountKey {
            tenant_id: self.tenant_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            outcome: self.outcome.clone(),
            hour: self.hour as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(outcome: &str, hour: i64) -> CountKey {
        CountKey {
            tenant_id: "t".into(),
            endpoint_id: "e".into(),
            outcome: outcome.into(),
            hour,
        }
    }

    #[test]
    fn equal_counts_have_no_difference_and_any_missing_or_extra_row_is_one() {
        let log = Counts::from([(key("succeeded", 0), 3), (key("failed", 3600), 1)]);
        let agreeing = ViewCounts {
            postgres: log.clone(),
            clickhouse: log.clone(),
            minute_rollup: log.clone(),
            hour_rollup: log.clone(),
        };
        assert!(differences(&log, &agreeing).is_empty());

        let mut views = agreeing.clone();
        views.postgres.insert(key("succeeded", 0), 2);
        views.clickhouse.insert(key("expired", 7200), 1);
        views.hour_rollup.insert(key("failed", 3600), 2);
        let found = differences(&log, &views);
        assert_eq!(
            found,
            vec![
                Difference {
                    key: key("expired", 7200),
                    log: 0,
                    postgres: 0,
                    clickhouse: 1,
                    minute_rollup: 0,
                    hour_rollup: 0,
                },
                Difference {
                    key: key("failed", 3600),
                    log: 1,
                    postgres: 1,
                    clickhouse: 1,
                    minute_rollup: 1,
                    hour_rollup: 2,
                },
                Difference {
                    key: key("succeeded", 0),
                    log: 3,
                    postgres: 2,
                    clickhouse: 3,
                    minute_rollup: 3,
                    hour_rollup: 3,
                },
            ]
        );
    }
}
