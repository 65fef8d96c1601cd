//! A slow endpoint must not starve others. One tenant's endpoint answers after 5 s while its
//! tenant sends far more events than it can take; meanwhile another tenant's first attempts
//! must go out at once (p99 sent→received under a second). Its own binary: its Herald has a
//! small in-flight bound, so that a backlog that waited in memory would fill the first-attempt
//! consumer's pending limit within seconds.

use herald_tests::receiver::Receiver;
use herald_tests::{start_with, wait_until, Api};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_first_attempts_to_other_tenants() -> anyhow::Result<()> {
    let api = Arc::new(Api::with(start_with(|config| {
        config.delivery.max_in_flight = 128;
        config.delivery.max_in_flight_per_endpoint = 32;
        config.delivery.request_timeout_ms = 10_000;
        config.delivery.first_byte_timeout_ms = 10_000;
    })?));
    let slow_tenant = Arc::new(api.create_tenant("slow").await?);
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(5));
    api.create_endpoint(&slow_tenant, json!({ "url": slow.url }))
        .await?;
    let fast_tenant = api.create_tenant("fast").await?;
    let fast = Receiver::start().await;
    api.create_endpoint(&fast_tenant, json!({ "url": fast.url }))
        .await?;

    // 250 events/s for the slow endpoint (it takes about 6/s): a backlog of thousands.
    let flooded = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (api, tenant, flooded) = (api.clone(), slow_tenant.clone(), flooded.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(4));
            for index in 0..4_000 {
                pace.tick().await;
                let _ = api
                    .post_event(
                        &tenant,
                        json!({ "type": "t", "payload": { "index": index } }),
                    )
                    .await;
                flooded.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Once the backlog is larger than the first-attempt consumer may hold unacknowledged
    // (4 × the in-flight bound), the other tenant sends 10 events/s.
    wait_until(
        Duration::from_secs(60),
        "a backlog at the slow endpoint",
        || async { (flooded.load(Ordering::Relaxed) >= 1_000).then_some(()) },
    )
    .await?;
    let mut sent = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for index in 0..100 {
        pace.tick().await;
        let sent_at = Instant::now();
        let event_id = api
            .send_event(
                &fast_tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?;
        sent.push((event_id, sent_at));
    }
    wait_until(
        Duration::from_secs(30),
        "every fast event received",
        || async { (fast.distinct_ids().len() >= sent.len()).then_some(()) },
    )
    .await?;
    flood.abort();

    let received: std::collections::HashMap<String, Instant> = fast
        .requests()
        .iter()
        .map(|request| (request.header("webhook-id").to_owned(), request.received_at))
        .collect();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(event_id, accepted)| received[event_id].saturating_duration_since(*accepted))
        .collect();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "fast tenant sent→received while the slow endpoint had {} requests: p50 {p50:?}, p99 {p99:?}, max {:?}",
        slow.count(),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    Ok(())
}
