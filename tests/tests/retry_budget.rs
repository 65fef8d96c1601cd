//! The global retry budget holds a retry storm to its rate while first attempts go on
//! unhindered. Its own test binary: it needs its own Herald with a small budget.

use futures::StreamExt;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{start_with, wait_until, Api};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// 10 retries a second, up to 10 at once.
const BUDGET_PER_MINUTE: u32 = 600;
const FAILING_EVENTS: usize = 50;

#[tokio::test]
async fn a_retry_storm_is_held_to_the_budget_and_first_attempts_keep_priority() -> anyhow::Result<()>
{
    let api = Api::with(start_with(|config| {
        config.delivery.retry_budget_per_minute = BUDGET_PER_MINUTE;
        // The breaker would park the storm itself; here the budget alone must hold it.
        config.delivery.breaker_failure_threshold = 100_000;
    })?);
    let storm_tenant = api.create_tenant("storm").await?;
    let failing = Receiver::start().await;
    failing.script((0..FAILING_EVENTS * 10).map(|_| Reply::status(503)));
    api.create_endpoint(
        &storm_tenant,
        json!({
            "url": failing.url,
            "retry_policy": { "max_attempts": 3, "initial_delay_ms": 100, "max_delay_ms": 200 }
        }),
    )
    .await?;
    let accepted = futures::stream::iter(0..FAILING_EVENTS)
        .map(|index| {
            api.send_event(
                &storm_tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
        })
        .buffer_unordered(16)
        .filter(|result| futures::future::ready(result.is_ok()))
        .count()
        .await;
    assert_eq!(accepted, FAILING_EVENTS);

    // While the retries queue up for their slots, a healthy endpoint's first attempts arrive
    // at once.
    let healthy_tenant = api.create_tenant("healthy").await?;
    let healthy = Receiver::start().await;
    api.create_endpoint(&healthy_tenant, json!({ "url": healthy.url }))
        .await?;
    let mut first_attempt_latency = Vec::new();
    for index in 0..10 {
        let sent = Instant::now();
        api.send_event(
            &healthy_tenant,
            json!({ "type": "t", "payload": { "index": index } }),
        )
        .await?;
        wait_until(Duration::from_secs(10), "healthy delivery", || async {
            (healthy.count() > index).then_some(())
        })
        .await?;
        first_attempt_latency.push(sent.elapsed());
    }

    // Every failing delivery is eventually dead-lettered after its 3 attempts.
    wait_until(Duration::from_secs(60), "the storm's retries", || async {
        (failing.count() == FAILING_EVENTS * 3).then_some(())
    })
    .await?;

    // Retries are every request after an event's first; in any second no more than the
    // budget's second's worth (10) plus its rate (10) may arrive, with a little slack for
    // the time between an attempt's start and its arrival.
    let mut seen = HashSet::new();
    let retry_times: Vec<Instant> = failing
        .requests()
        .iter()
        .filter(|request| !seen.insert(request.header("webhook-id").to_owned()))
        .map(|request| request.received_at)
        .collect();
    assert_eq!(retry_times.len(), FAILING_EVENTS * 2);
    let busiest_second = retry_times
        .iter()
        .map(|&from| {
            retry_times
                .iter()
                .filter(|&&at| at >= from && at < from + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest_second <= 22,
        "{busiest_second} retries within one second"
    );
    let spread = retry_times[retry_times.len() - 1] - retry_times[0];
    assert!(
        spread >= Duration::from_secs(7),
        "100 retries took only {spread:?}"
    );

    first_attempt_latency.sort();
    let worst = first_attempt_latency[first_attempt_latency.len() - 1];
    assert!(
        worst < Duration::from_secs(1),
        "first attempts waited up to {worst:?}"
    );
    Ok(())
}
