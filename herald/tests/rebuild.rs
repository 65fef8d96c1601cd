//! `herald rebuild --target postgres` while events are being accepted, delivered and retried:
//! afterwards `herald reconcile` finds the log and both views agreeing, and a second rebuild
//! (nothing moving) yields the same view, row for row.

use herald_tests::kill_load::{check_nothing_lost, send_with_repeats, LoadShape, Progress};
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const LOAD: LoadShape = LoadShape {
    events: 1_500,
    clients: 8,
    per_second: 250.0,
    deadline: Duration::from_secs(120),
};

/// The Postgres read model as one digest per table (deliveries without `updated_at`, which
/// says when a row was written, not what it says).
async fn view_digest(pool: &sqlx::PgPool) -> anyhow::Result<Vec<(String, i64, String)>> {
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

async fn run_task(process: &HeraldProcess, args: &[&str]) -> anyhow::Result<String> {
    let output = process.run_task(args).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "herald {}: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn a_rebuild_under_live_traffic_yields_the_view_the_log_implies() -> anyhow::Result<()> {
    let process = HeraldProcess::start(HERALD, &[("HERALD_CLICKHOUSE_FLUSH_MS", "200")]).await?;
    let api = Arc::new(Api::with(process.herald.clone()));
    let tenant = Arc::new(api.create_tenant("rebuild").await?);
    let receiver = Receiver::start().await;
    receiver.fail_every(7);
    api.create_endpoint(
        &tenant,
        json!({
            "url": receiver.url,
            "retry_policy": { "max_attempts": 8, "initial_delay_ms": 100, "multiplier": 2.0,
                              "max_delay_ms": 1000, "deadline_ms": 600000 }
        }),
    )
    .await?;

    let progress = Arc::new(Progress::default());
    let load = tokio::spawn(send_with_repeats(
        api.clone(),
        tenant.clone(),
        LOAD,
        progress.clone(),
    ));
    wait_until(Duration::from_secs(60), "load under way", || async {
        (progress.accepted.load(Ordering::Relaxed) >= LOAD.events / 3).then_some(())
    })
    .await?;
    let during = run_task(&process, &["rebuild", "--target", "postgres"]).await?;
    anyhow::ensure!(
        progress.accepted.load(Ordering::Relaxed) < LOAD.events,
        "the load was over before the rebuild finished; it did not run under live traffic"
    );
    let outcome = load.await?;
    check_nothing_lost(
        &api,
        &tenant,
        &outcome,
        || receiver.distinct_ids(),
        Duration::from_secs(120),
    )
    .await?;
    run_task(&process, &["reconcile", "--since", "1h"]).await?;

    let pool = api.postgres().await?;
    let before = view_digest(&pool).await?;
    let again = run_task(&process, &["rebuild", "--target", "postgres"]).await?;
    let after = view_digest(&pool).await?;
    anyhow::ensure!(
        before == after,
        "a rebuild of a settled view changed it:\nbefore {before:?}\nafter  {after:?}"
    );
    run_task(&process, &["reconcile", "--since", "1h"]).await?;
    println!("during load: {during}idle: {again}digests: {after:?}");
    Ok(())
}
