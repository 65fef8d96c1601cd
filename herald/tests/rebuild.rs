//! `herald rebuild --target postgres` and `--target clickhouse`, together, while events are
//! being accepted, delivered and retried: afterwards `herald reconcile` finds the log and all
//! views agreeing, and rebuilding again with nothing moving (ClickHouse from the middle of
//! the log too, keeping what came before) yields the same views, row for row.

use herald_tests::kill_load::{check_nothing_lost, send_with_repeats, LoadShape, Progress};
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{view_digest, wait_until, Api};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const LOAD: LoadShape = LoadShape {
    events: 2_500,
    clients: 8,
    per_second: 250.0,
    deadline: Duration::from_secs(120),
};

/// An hour rollup row older than any raw attempt kept (as after retention dropped its day) is
/// kept by a rebuild from a later sequence; one that also counts an attempt from that
/// sequence on makes the rebuild refuse, and the view stays as it was.
async fn check_history_before_the_raw_rows(
    api: &Api,
    process: &HeraldProcess,
    from: &str,
) -> anyhow::Result<()> {
    let old_attempt = |sequence: &str| {
        format!(
            "INSERT INTO sli_hour_refill (started_at, tenant_id, endpoint_id, event_type, outcome, \
               error_class, latency_ms, end_to_end_ms, log_sequence) \
             VALUES (toStartOfHour(now()) - 40 * 86400, 'old-tenant', 'old-endpoint', 'old.type', \
               'succeeded', '', 12, 40, {sequence})"
        )
    };
    let old_hour_attempts = "SELECT sum(attempts) FROM sli_hour WHERE tenant_id = 'old-tenant'";
    api.clickhouse(&old_attempt("1")).await?;
    run_task(
        process,
        &["rebuild", "--target", "clickhouse", "--from", from],
    )
    .await?;
    let kept = api.clickhouse(old_hour_attempts).await?;
    anyhow::ensure!(kept == "1", "the old hour was not kept: {kept} attempts");

    api.clickhouse(&old_attempt(from)).await?;
    let before = view_digest::clickhouse(api).await?;
    let refused = process
        .run_task(&["rebuild", "--target", "clickhouse", "--from", from])
        .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    anyhow::ensure!(
        !refused.status.success() && stderr.contains("cannot be rebuilt from sequence"),
        "a rebuild that would count an old attempt twice was not refused: {stderr}"
    );
    anyhow::ensure!(
        view_digest::clickhouse(api).await? == before,
        "a refused rebuild changed the view"
    );
    Ok(())
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
    let (postgres_during, clickhouse_during) = tokio::join!(
        run_task(&process, &["rebuild", "--target", "postgres"]),
        run_task(&process, &["rebuild", "--target", "clickhouse"]),
    );
    let (postgres_during, clickhouse_during) = (postgres_during?, clickhouse_during?);
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
    let before = view_digest::postgres(&pool).await?;
    let again = run_task(&process, &["rebuild", "--target", "postgres"]).await?;
    let after = view_digest::postgres(&pool).await?;
    anyhow::ensure!(
        before == after,
        "a rebuild of a settled view changed it:\nbefore {before:?}\nafter  {after:?}"
    );

    view_digest::check_quantiles(&api, 0.02).await?;
    let clickhouse_before = view_digest::clickhouse(&api).await?;
    let clickhouse_again = run_task(&process, &["rebuild", "--target", "clickhouse"]).await?;
    let clickhouse_after = view_digest::clickhouse(&api).await?;
    anyhow::ensure!(
        clickhouse_before == clickhouse_after,
        "a ClickHouse rebuild of a settled view changed it:\nbefore {clickhouse_before:?}\n\
         after  {clickhouse_after:?}"
    );
    let middle = api
        .clickhouse("SELECT intDiv(max(log_sequence), 2) FROM attempts")
        .await?;
    let from_middle = run_task(
        &process,
        &["rebuild", "--target", "clickhouse", "--from", &middle],
    )
    .await?;
    anyhow::ensure!(
        !from_middle.contains("(0 earlier attempt rows kept)"),
        "a rebuild from sequence {middle} kept nothing from before it: {from_middle}"
    );
    let clickhouse_after = view_digest::clickhouse(&api).await?;
    anyhow::ensure!(
        clickhouse_before == clickhouse_after,
        "a ClickHouse rebuild from sequence {middle} changed the settled view:\n\
         before {clickhouse_before:?}\nafter  {clickhouse_after:?}"
    );
    check_history_before_the_raw_rows(&api, &process, &middle).await?;
    // The quantiles, which the digests leave out, are as good as the live view's.
    let quantiles = view_digest::check_quantiles(&api, 0.02).await?;
    anyhow::ensure!(quantiles > 0, "no latency quantile to check");
    run_task(&process, &["reconcile", "--since", "1h"]).await?;
    println!(
        "{quantiles} quantiles within 2 % in rank of the exact ones; during load: {postgres_during}{clickhouse_during}idle: {again}{clickhouse_again}\
         {from_middle}digests: {after:?} {clickhouse_after:?}"
    );
    Ok(())
}
