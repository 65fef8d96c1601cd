//! Watches endpoints' delivery objectives: every round (`HERALD_SLO_EVALUATION_MS`) counts
//! each objective endpoint's attempts and failures in the ClickHouse SLI rollups over the
//! alert windows and its objective's window, keeps what it found in `endpoint_slo_status`
//! (the API and dashboard show the budget left from there), and appends
//! `endpoint.slo_burning.v1` when an alert starts or turns fast — staged in the same
//! transaction through the outbox, so a round that fails announces nothing twice or never.
//!
//! Herald's own `herald.…` events are left out of the counts: their failures must not feed
//! an alert that is itself delivered as one of them. One query process evaluates per round
//! (a transaction-scoped advisory lock), however many run.

use crate::slo_budget::{announces, assess, Observed, WindowCounts};
use chrono::{DateTime, Utc};
use herald_log::outbox::{Outbox, Staged};
use herald_log::LogPublisher;
use herald_schemas::{EndpointId, EndpointSlo, EndpointSloBurning, LogMessage, SloAlert, TenantId};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::PgPool;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Arbitrary, Herald's own: the advisory lock key of an evaluation round.
const ROUND_LOCK: i64 = 0x4845_5241_4c44_534c;

#[derive(Debug, thiserror::Error)]
pub enum SloWatchError {
    #[error("the read model: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("the SLI rollups (ClickHouse): {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

pub struct SloWatch {
    pool: PgPool,
    clickhouse: clickhouse::Client,
    publisher: LogPublisher,
    outbox: Outbox,
}

impl SloWatch {
    pub fn new(pool: PgPool, clickhouse: clickhouse::Client, publisher: LogPublisher) -> Self {
        Self {
            outbox: Outbox::new(pool.clone(), publisher.clone()),
            pool,
            clickhouse,
            publisher,
        }
    }

    /// Evaluates every `every` until `shutdown`; a failed round is logged and tried at the
    /// next one.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        loop {
            match self.round(Utc::now()).await {
                Ok(staged) => {
                    for staged in staged {
                        self.outbox.send(staged).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "objectives not evaluated this round"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One evaluation at `now`; returns the alerts staged for the log.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Vec<Staged>, SloWatchError> {
        let mut transaction = self.pool.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ROUND_LOCK)
            .fetch_one(&mut *transaction)
            .await?;
        if !ours {
            return Ok(Vec::new());
        }
        let objectives: Vec<(Uuid, Uuid, Json<EndpointSlo>, Option<String>)> = sqlx::query_as(
            "SELECT e.endpoint_id, e.tenant_id, e.slo, s.alert FROM endpoints e \
             LEFT JOIN endpoint_slo_status s USING (endpoint_id) WHERE e.slo IS NOT NULL",
        )
        .fetch_all(&mut *transaction)
        .await?;
        sqlx::query(
            "DELETE FROM endpoint_slo_status s USING endpoints e \
             WHERE e.endpoint_id = s.endpoint_id AND e.slo IS NULL",
        )
        .execute(&mut *transaction)
        .await?;
        if objectives.is_empty() {
            transaction.commit().await?;
            return Ok(Vec::new());
        }
        let observed = self.observe(&objectives, now).await?;
        let mut rows = StatusRows::default();
        let mut staged = Vec::new();
        for (endpoint_id, tenant_id, objective, before) in objectives {
            let objective = objective.0;
            let seen = observed.get(&endpoint_id).copied().unwrap_or_default();
            let assessed = assess(&seen, &objective);
            let before = before.as_deref().and_then(alert_named);
            if announces(before, assessed.alert) {
                let alert = assessed.alert.unwrap_or(SloAlert::Slow);
                let (long, short) = match alert {
                    SloAlert::Fast => (assessed.burn_rate_1h, assessed.burn_rate_5m),
                    SloAlert::Slow => (assessed.burn_rate_6h, assessed.burn_rate_30m),
                };
                tracing::warn!(%endpoint_id, alert = alert.as_str(), burn_rate = long, "error budget burning");
                let message = LogMessage::EndpointSloBurning(EndpointSloBurning {
                    endpoint_id: EndpointId(endpoint_id),
                    tenant_id: TenantId(tenant_id),
                    alert,
                    objective,
                    burn_rate_long: long,
                    burn_rate_short: short,
                    budget_remaining: assessed.budget_remaining,
                    detected_at: now,
                });
                let subject = self
                    .publisher
                    .namespace()
                    .config_subject(TenantId(tenant_id));
                staged.push(Outbox::stage(&mut transaction, subject, &message).await?);
            }
            let alert_since = match (before, assessed.alert) {
                (Some(_), Some(_)) => None, // kept as it was (COALESCE below)
                (_, Some(_)) => Some(now),
                _ => None,
            };
            rows.push(endpoint_id, tenant_id, &seen, &assessed, alert_since);
        }
        rows.write(&mut transaction, now).await?;
        transaction.commit().await?;
        Ok(staged)
    }

    /// Attempts and failures per endpoint over the alert windows (minute rollup) and each
    /// objective's window (hour rollup), Herald's own events left out.
    async fn observe(
        &self,
        objectives: &[(Uuid, Uuid, Json<EndpointSlo>, Option<String>)],
        now: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, Observed>, SloWatchError> {
        let seconds_ago = |seconds: i64| (now.timestamp() - seconds).max(0) as u32;
        let endpoints: Vec<String> = objectives
            .iter()
            .map(|(endpoint_id, ..)| endpoint_id.to_string())
            .collect();
        let recent: Vec<RecentRow> = self
            .clickhouse
            .query(
                "SELECT endpoint_id, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?)) AS attempts_5m, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?) AND outcome != 'succeeded') AS failures_5m, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?)) AS attempts_30m, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?) AND outcome != 'succeeded') AS failures_30m, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?)) AS attempts_1h, \
                   countMergeIf(attempts_state, period_start >= toDateTime(?) AND outcome != 'succeeded') AS failures_1h, \
                   countMerge(attempts_state) AS attempts_6h, \
                   countMergeIf(attempts_state, outcome != 'succeeded') AS failures_6h \
                 FROM sli_minute_rollup \
                 WHERE period_start >= toDateTime(?) AND has(?, endpoint_id) \
                   AND NOT startsWith(event_type, 'herald.') \
                 GROUP BY endpoint_id",
            )
            .bind(seconds_ago(300))
            .bind(seconds_ago(300))
            .bind(seconds_ago(1_800))
            .bind(seconds_ago(1_800))
            .bind(seconds_ago(3_600))
            .bind(seconds_ago(3_600))
            .bind(seconds_ago(6 * 3_600))
            .bind(&endpoints)
            .fetch_all()
            .await?;
        let mut observed: HashMap<Uuid, Observed> = HashMap::new();
        for row in recent {
            let Ok(endpoint_id) = row.endpoint_id.parse::<Uuid>() else {
                continue;
            };
            let entry = observed.entry(endpoint_id).or_default();
            entry.last_5m = WindowCounts {
                attempts: row.attempts_5m,
                failures: row.failures_5m,
            };
            entry.last_30m = WindowCounts {
                attempts: row.attempts_30m,
                failures: row.failures_30m,
            };
            entry.last_1h = WindowCounts {
                attempts: row.attempts_1h,
                failures: row.failures_1h,
            };
            entry.last_6h = WindowCounts {
                attempts: row.attempts_6h,
                failures: row.failures_6h,
            };
        }
        // One query per distinct window length (few: 7, 28, 30 days are typical).
        let windows: BTreeSet<u32> = objectives
            .iter()
            .map(|(_, _, objective, _)| objective.0.window_days)
            .collect();
        for window_days in windows {
            let members: Vec<String> = objectives
                .iter()
                .filter(|(_, _, objective, _)| objective.0.window_days == window_days)
                .map(|(endpoint_id, ..)| endpoint_id.to_string())
                .collect();
            let totals: Vec<WindowRow> = self
                .clickhouse
                .query(
                    "SELECT endpoint_id, countMerge(attempts_state) AS attempts, \
                       countMergeIf(attempts_state, outcome != 'succeeded') AS failures \
                     FROM sli_hour_rollup \
                     WHERE period_start >= toDateTime(?) AND has(?, endpoint_id) \
                       AND NOT startsWith(event_type, 'herald.') \
                     GROUP BY endpoint_id",
                )
                .bind(seconds_ago(i64::from(window_days) * 86_400))
                .bind(&members)
                .fetch_all()
                .await?;
            for row in totals {
                if let Ok(endpoint_id) = row.endpoint_id.parse::<Uuid>() {
                    observed.entry(endpoint_id).or_default().objective_window = WindowCounts {
                        attempts: row.attempts,
                        failures: row.failures,
                    };
                }
            }
        }
        Ok(observed)
    }
}

fn alert_named(name: &str) -> Option<SloAlert> {
    [SloAlert::Fast, SloAlert::Slow]
        .into_iter()
        .find(|alert| alert.as_str() == name)
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct RecentRow {
    endpoint_id: String,
    attempts_5m: u64,
    failures_5m: u64,
    attempts_30m: u64,
    failures_30m: u64,
    attempts_1h: u64,
    failures_1h: u64,
    attempts_6h: u64,
    failures_6h: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct WindowRow {
    endpoint_id: String,
    attempts: u64,
    failures: u64,
}

/// `endpoint_slo_status` rows as column arrays: one statement per round.
#[derive(Default)]
struct StatusRows {
    endpoint_id: Vec<Uuid>,
    tenant_id: Vec<Uuid>,
    attempts: Vec<i64>,
    failures: Vec<i64>,
    budget_remaining: Vec<f64>,
    burn_rates: [Vec<f64>; 4],
    alert: Vec<Option<&'static str>>,
    alert_since: Vec<Option<DateTime<Utc>>>,
}

impl StatusRows {
    fn push(
        &mut self,
        endpoint_id: Uuid,
        tenant_id: Uuid,
        observed: &Observed,
        assessed: &crate::slo_budget::Assessment,
        alert_since: Option<DateTime<Utc>>,
    ) {
        self.endpoint_id.push(endpoint_id);
        self.tenant_id.push(tenant_id);
        let whole = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        self.attempts
            .push(whole(observed.objective_window.attempts));
        self.failures
            .push(whole(observed.objective_window.failures));
        self.budget_remaining.push(assessed.budget_remaining);
        for (column, rate) in self.burn_rates.iter_mut().zip([
            assessed.burn_rate_5m,
            assessed.burn_rate_30m,
            assessed.burn_rate_1h,
            assessed.burn_rate_6h,
        ]) {
            column.push(rate);
        }
        self.alert.push(assessed.alert.map(SloAlert::as_str));
        self.alert_since.push(alert_since);
    }

    async fn write(
        &self,
        transaction: &mut sqlx::PgConnection,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO endpoint_slo_status (endpoint_id, tenant_id, evaluated_at, attempts, failures, \
               budget_remaining, burn_rate_5m, burn_rate_30m, burn_rate_1h, burn_rate_6h, alert, alert_since) \
             SELECT endpoint_id, tenant_id, $3, attempts, failures, budget_remaining, burn_5m, burn_30m, \
               burn_1h, burn_6h, alert, alert_since \
             FROM UNNEST($1::uuid[], $2::uuid[], $4::int8[], $5::int8[], $6::float8[], $7::float8[], \
               $8::float8[], $9::float8[], $10::float8[], $11::text[], $12::timestamptz[]) \
               AS t(endpoint_id, tenant_id, attempts, failures, budget_remaining, burn_5m, burn_30m, \
                 burn_1h, burn_6h, alert, alert_since) \
             ON CONFLICT (endpoint_id) DO UPDATE SET evaluated_at = EXCLUDED.evaluated_at, \
               attempts = EXCLUDED.attempts, failures = EXCLUDED.failures, \
               budget_remaining = EXCLUDED.budget_remaining, burn_rate_5m = EXCLUDED.burn_rate_5m, \
               burn_rate_30m = EXCLUDED.burn_rate_30m, burn_rate_1h = EXCLUDED.burn_rate_1h, \
               burn_rate_6h = EXCLUDED.burn_rate_6h, alert = EXCLUDED.alert, \
               alert_since = CASE WHEN EXCLUDED.alert IS NULL THEN NULL \
                 ELSE COALESCE(endpoint_slo_status.alert_since, EXCLUDED.alert_since) END",
        )
        .bind(&self.endpoint_id)
        .bind(&self.tenant_id)
        .bind(now)
        .bind(&self.attempts)
        .bind(&self.failures)
        .bind(&self.budget_remaining)
        .bind(&self.burn_rates[0])
        .bind(&self.burn_rates[1])
        .bind(&self.burn_rates[2])
        .bind(&self.burn_rates[3])
        .bind(&self.alert)
        .bind(&self.alert_since)
        .execute(transaction)
        .await
        .map(|_| ())
    }
}
