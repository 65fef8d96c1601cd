//! A dead endpoint with a 10 000-delivery backlog must not delay first attempts to a healthy
//! endpoint. Runs in its own test binary (so its own Herald) because the backlog keeps the
//! retry tiers busy for the rest of the process.

use futures::StreamExt;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::{Duration, Instant};

const BACKLOG: usize = 10_000;
const PROBES: usize = 100;

#[tokio::test]
async fn a_dead_endpoints_backlog_does_not_delay_a_healthy_endpoint() -> anyhow::Result<()> {
    let api = Api::new();
    let dead_tenant = api.create_tenant("dead-endpoint").await?;
    // A loopback port nobody listens on: every attempt fails with "connection refused".
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    api.create_endpoint(
        &dead_tenant,
        json!({ "url": format!("http://127.0.0.1:{closed_port}/hook") }),
    )
    .await?;

    let started = Instant::now();
    let accepted = futures::stream::iter(0..BACKLOG)
        .map(|index| {
            api.send_event(
                &dead_tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
        })
        .buffer_unordered(64)
        .filter(|result| futures::future::ready(result.is_ok()))
        .count()
        .await;
    assert_eq!(accepted, BACKLOG);
    let ingest = started.elapsed();

    // Every backlog delivery has had its first attempt or been parked by the open breaker:
    // they now wait in the retry tiers, which churn through them while we measure.
    wait_until(
        Duration::from_secs(120),
        "the backlog to leave the first-attempt queue",
        || async { (api.first_attempts_outstanding().await.ok()? == 0).then_some(()) },
    )
    .await?;
    let drained = started.elapsed();
    let pool = api.postgres().await?;
    let retrying: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")
            .fetch_one(&pool)
            .await?;

    let healthy_tenant = api.create_tenant("healthy").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&healthy_tenant, json!({ "url": receiver.url }))
        .await?;
    let mut latencies = Vec::with_capacity(PROBES);
    for index in 0..PROBES {
        let sent = Instant::now();
        let event_id = api
            .send_event(
                &healthy_tenant,
                json!({ "type": "t", "payload": { "probe": index } }),
            )
            .await?;
        wait_until(
            Duration::from_secs(10),
            "the healthy endpoint's delivery",
            || async { receiver.distinct_ids().contains(&event_id).then_some(()) },
        )
        .await?;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let p50 = latencies[PROBES / 2];
    let p99 = latencies[PROBES * 99 / 100];
    let max = latencies[PROBES - 1];
    println!(
        "backlog of {BACKLOG} deliveries to a dead endpoint (ingested in {ingest:?}, first attempts done after {drained:?}, {retrying} undelivered); \
         healthy endpoint send→delivered over {PROBES} events: p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(
        p99 < Duration::from_millis(500),
        "p99 {p99:?} — the dead endpoint's backlog is in the way"
    );
    Ok(())
}
