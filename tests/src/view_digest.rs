//! Each read model as a short digest per table or view, to show that a rebuild reproduces it.

use crate::Api;
use anyhow::Result;

/// The Postgres read model as one digest per table (deliveries without `updated_at`, which
/// says when a row was written, not what it says).
pub async fn postgres(pool: &sqlx::PgPool) -> Result<Vec<(String, i64, String)>> {
    let mut digests = Vec::new();
    for (table, query) in [
        (
            "events",
            "SELECT t::text AS row FROM events t ORDER BY event_id",
        ),
        (
            "deliveries",
            "SELECT (event_id, endpoint_id, tenant_id, status, attempt_count, last_attempt_at, \
               next_attempt_at, last_http_status, last_error_code)::text AS row \
             FROM deliveries ORDER BY event_id, endpoint_id",
        ),
        (
            "attempts",
            "SELECT t::text AS row FROM attempts t ORDER BY attempt_id",
        ),
        (
            "endpoint_health",
            "SELECT t::text AS row FROM endpoint_health t ORDER BY endpoint_id",
        ),
        (
            "replays",
            "SELECT (replay_id, tenant_id, mode, since, until, endpoint_id, event_types, \
               events_per_second, status, events_replayed, deliveries_scheduled, \
               through_sequence, started_at, finished_at)::text AS row \
             FROM replays ORDER BY replay_id",
        ),
    ] {
        let (rows, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(row, '|')) FROM ({query}) AS r"
        ))
        .fetch_one(pool)
        .await?;
        digests.push((table.to_owned(), rows, digest.unwrap_or_default()));
    }
    Ok(digests)
}

/// The ClickHouse read model: the raw attempts and every dashboard view over the rollups,
/// each as its row count and an order-independent hash. Latency quantiles (the `*_ms`
/// columns) are left out: t-digest estimates depend on the order rows were merged in, so a
/// rebuild reproduces them only within the estimate's error (`check_quantiles`).
pub async fn clickhouse(api: &Api) -> Result<Vec<(String, String)>> {
    let mut digests = Vec::new();
    for table in [
        "attempts",
        "sli_minute",
        "sli_hour",
        "sli_tenant_minute",
        "sli_tenant_hour",
        "sli_outcomes_minute",
        "sli_outcomes_hour",
    ] {
        let columns = api
            .clickhouse(&format!("DESCRIBE TABLE {table}"))
            .await?
            .lines()
            .filter_map(|line| line.split('\t').next())
            .filter(|name| !name.ends_with("_ms"))
            .collect::<Vec<_>>()
            .join(", ");
        let digest = api
            .clickhouse(&format!(
                "SELECT count(), sum(cityHash64(toString(tuple({columns})))) FROM {table}"
            ))
            .await?;
        digests.push((table.to_owned(), digest));
    }
    Ok(digests)
}

/// Checks that every latency quantile `sli_hour` shows lies between the exact quantiles of
/// the raw attempts at its level ± `rank_error` (a t-digest's error is in rank). Returns how
/// many quantiles were checked.
pub async fn check_quantiles(api: &Api, rank_error: f64) -> Result<usize> {
    const LEVELS: [f64; 4] = [0.5, 0.9, 0.95, 0.99];
    const NO_REQUEST: &str =
        "('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')";
    let bounds = LEVELS
        .iter()
        .flat_map(|level| [(level - rank_error).max(0.0), (level + rank_error).min(1.0)])
        .map(|level| format!("{level:.4}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = api
        .clickhouse(&format!(
            "SELECT v.tenant_id AS tenant_id, v.endpoint_id AS endpoint_id, \
               v.event_type AS event_type, toUInt32(v.period_start) AS hour, \
               [v.attempt_latency_p50_ms, v.attempt_latency_p90_ms, v.attempt_latency_p95_ms, \
                v.attempt_latency_p99_ms] AS attempt, \
               [v.end_to_end_p50_ms, v.end_to_end_p90_ms, v.end_to_end_p95_ms, \
                v.end_to_end_p99_ms] AS end_to_end, \
               r.attempt_bounds AS attempt_bounds, r.end_to_end_bounds AS end_to_end_bounds \
             FROM sli_hour AS v ANY INNER JOIN ( \
               SELECT toStartOfHour(started_at) AS period_start, tenant_id, endpoint_id, \
                 event_type, \
                 quantilesExactIf({bounds})(latency_ms, error_class NOT IN {NO_REQUEST}) \
                   AS attempt_bounds, \
                 quantilesExactIf({bounds})(end_to_end_ms, outcome = 'succeeded') \
                   AS end_to_end_bounds \
               FROM attempts GROUP BY period_start, tenant_id, endpoint_id, event_type \
             ) AS r USING (period_start, tenant_id, endpoint_id, event_type) \
             FORMAT JSONEachRow"
        ))
        .await?;
    let mut checked = 0;
    for line in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(line)?;
        for (shown, bounds) in [
            ("attempt", "attempt_bounds"),
            ("end_to_end", "end_to_end_bounds"),
        ] {
            let number = |value: &serde_json::Value| {
                value
                    .as_f64()
                    .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            };
            let shown_values = row[shown].as_array().cloned().unwrap_or_default();
            let bound_values = row[bounds].as_array().cloned().unwrap_or_default();
            for (index, value) in shown_values.iter().enumerate() {
                let Some(value) = number(value) else { continue };
                let low = bound_values
                    .get(2 * index)
                    .and_then(number)
                    .unwrap_or(f64::NAN);
                let high = bound_values
                    .get(2 * index + 1)
                    .and_then(number)
                    .unwrap_or(f64::NAN);
                anyhow::ensure!(
                    value >= low - 0.5 && value <= high + 0.5,
                    "{shown} p{} of {line} is {value}, outside the exact quantiles {low}..{high} \
                     at ± {rank_error} in rank",
                    LEVELS[index] * 100.0
                );
                checked += 1;
            }
        }
    }
    Ok(checked)
}
