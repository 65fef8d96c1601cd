//! A busy endpoint's backlog waits in the log and goes out at the pace the endpoint answers
//! (ADR 0026): not at the pace measured while it was slow, never lost when the process dies
//! with a backlog, and its consumer gone once it is empty. Each test runs `herald all` as a
//! child process with few slots per endpoint, so that a backlog forms within seconds.

use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api, Tenant};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Eight slots per endpoint: at 200 ms a request the endpoint takes 40 deliveries a second,
/// and about a second of that may wait in memory.
const SETTINGS: [(&str, &str); 4] = [
    ("HERALD_MAX_IN_FLIGHT_PER_ENDPOINT", "8"),
    ("HERALD_MAX_IN_FLIGHT", "64"),
    ("HERALD_ACK_WAIT_MS", "5000"),
    ("HERALD_REQUEST_TIMEOUT_MS", "2000"),
];

/// Sends `count` events, sixteen at a time; returns their ids.
async fn flood(api: &Arc<Api>, tenant: &Tenant, count: usize) -> anyhow::Result<Vec<String>> {
    let mut sending = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..16 {
        let (api, tenant, next) = (api.clone(), tenant.clone(), next.clone());
        sending.spawn(async move {
            let mut sent = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(sent);
                }
                sent.push(
                    api.send_event(
                        &tenant,
                        json!({ "type": "t", "payload": { "index": index } }),
                    )
                    .await?,
                );
            }
        });
    }
    let mut event_ids = Vec::with_capacity(count);
    while let Some(sent) = sending.join_next().await {
        event_ids.extend(sent??);
    }
    Ok(event_ids)
}

async fn slow_endpoint(api: &Api) -> anyhow::Result<(Tenant, Receiver)> {
    let tenant = api.create_tenant("busy").await?;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(200));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    Ok((tenant, receiver))
}

/// Waits until at least `at_least` deliveries wait in the retry stream (wherever in it).
async fn a_backlog(api: &Api, at_least: u64) -> anyhow::Result<()> {
    wait_until(
        Duration::from_secs(30),
        "a backlog in the retry stream",
        || async { (api.busy_backlogs().await.ok()?.waiting >= at_least).then_some(()) },
    )
    .await
}

#[tokio::test]
async fn a_busy_endpoints_backlog_goes_out_as_fast_as_the_endpoint_answers_again(
) -> anyhow::Result<()> {
    let herald = HeraldProcess::start(HERALD, &SETTINGS).await?;
    let api = Arc::new(Api::with(herald.herald.clone()));
    let (tenant, receiver) = slow_endpoint(&api).await?;

    // 1 500 events for an endpoint that takes 40 a second: a backlog of over a thousand.
    let event_ids = flood(&api, &tenant, 1_500).await?;
    a_backlog(&api, 500).await?;

    // The endpoint is fast again. Deferred to moments estimated at 40 a second, the backlog
    // would come back over more than thirty seconds; taken out at the endpoint's pace it is
    // all delivered within a few.
    receiver.set_delay(Duration::ZERO);
    let fast_from = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the whole backlog delivered",
        || async { (receiver.distinct_ids().len() >= event_ids.len()).then_some(()) },
    )
    .await?;
    println!(
        "backlog of {} delivered {:?} after the endpoint answered fast again",
        event_ids.len(),
        fast_from.elapsed()
    );
    let received = receiver.distinct_ids();
    assert!(event_ids.iter().all(|event_id| received.contains(event_id)));
    assert_eq!(
        receiver.count(),
        event_ids.len(),
        "every delivery made once (nothing deferred twice or redelivered)"
    );

    // An empty backlog's consumer does not stay on the server.
    wait_until(
        Duration::from_secs(20),
        "the drained backlog's consumer deleted",
        || async {
            let backlogs = api.busy_backlogs().await.ok()?;
            (backlogs.in_backlogs == 0 && backlogs.consumers.is_empty()).then_some(())
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn sigkill_with_a_busy_backlog_loses_no_delivery() -> anyhow::Result<()> {
    let mut herald = HeraldProcess::start(HERALD, &SETTINGS).await?;
    let api = Arc::new(Api::with(herald.herald.clone()));
    let (tenant, receiver) = slow_endpoint(&api).await?;

    let event_ids = flood(&api, &tenant, 1_000).await?;
    a_backlog(&api, 300).await?;
    herald.kill()?;
    let left = api.busy_backlogs().await?;
    assert!(
        left.in_backlogs > 0 && !left.consumers.is_empty(),
        "a busy backlog and its consumer left: {left:?}"
    );

    // The restarted process finds the backlog it did not append to itself.
    receiver.set_delay(Duration::ZERO);
    herald.launch().await?;
    wait_until(
        Duration::from_secs(60),
        "every event delivered after the restart",
        || async { (receiver.distinct_ids().len() >= event_ids.len()).then_some(()) },
    )
    .await?;
    let received = receiver.distinct_ids();
    assert!(event_ids.iter().all(|event_id| received.contains(event_id)));
    Ok(())
}
