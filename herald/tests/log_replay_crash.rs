//! A replay from the log survives the death of the process performing it (ADR 0014): after a
//! SIGKILL mid-replay, a process started again resumes it from its last recorded progress and
//! finishes it, and no event is sent more often than at-least-once allows.

use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const EVENTS: usize = 12;

async fn delivered(api: &Api, tenant: &Tenant, event_id: &str) -> anyhow::Result<Value> {
    api.wait_for_event_status(tenant, event_id, "delivered")
        .await
}

async fn replay(api: &Api, tenant: &Tenant, location: &str) -> Option<Value> {
    let (status, body) = api.get(tenant, location).await.ok()?;
    (status == 200).then_some(body)
}

#[tokio::test]
async fn a_replay_killed_midway_resumes_from_its_progress_and_finishes() -> anyhow::Result<()> {
    // A short ack wait: the started replay comes back soon after the kill.
    let mut herald = HeraldProcess::start(HERALD, &[("HERALD_ACK_WAIT_MS", "3000")]).await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("log-replay-crash").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let mut event_ids = Vec::new();
    for index in 0..EVENTS {
        let event_id = api
            .send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?;
        delivered(&api, &tenant, &event_id).await?;
        event_ids.push(event_id);
    }
    // The range ends where this event begins: it is not replayed.
    let marker = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let until = delivered(&api, &tenant, &marker).await?["accepted_at"].clone();

    let response = api
        .http
        .post(api.url("/v1/replays"))
        .bearer_auth(&tenant.api_key)
        .json(
            &json!({ "since": "2000-01-01T00:00:00Z", "until": until, "mode": "as_then",
                       "events_per_second": 2 }),
        )
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "replay not started: {}",
        response.status()
    );
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    // Killed once it has recorded progress, and well before its end (six seconds at 2/s).
    let before_kill = wait_until(Duration::from_secs(20), "replay progress", || async {
        let body = replay(&api, &tenant, &location).await?;
        (body["status"] == "running" && body["events_replayed"].as_u64() >= Some(2)).then_some(body)
    })
    .await?;
    herald.kill()?;
    herald.launch().await?;

    let finished = wait_until(Duration::from_secs(60), "replay finished", || async {
        let body = replay(&api, &tenant, &location).await?;
        (body["status"] == "finished").then_some(body)
    })
    .await?;
    assert_eq!(finished["events_replayed"], EVENTS, "{finished}");
    assert_eq!(finished["deliveries_scheduled"], EVENTS, "{finished}");
    assert!(
        finished["through_sequence"].as_u64() >= before_kill["through_sequence"].as_u64(),
        "{before_kill} -> {finished}"
    );
    let sent = |event_id: &str| {
        receiver
            .requests()
            .iter()
            .filter(|request| request.header("webhook-id") == event_id)
            .count()
    };
    for event_id in &event_ids {
        wait_until(Duration::from_secs(30), "replayed delivery", || async {
            (sent(event_id) >= 2).then_some(())
        })
        .await?;
    }
    // Scheduled again after the resume, the few events since the last progress are dropped
    // by the log's duplicate window: at most an attempt in flight at the kill is repeated.
    for event_id in &event_ids {
        assert!(
            sent(event_id) <= 3,
            "{event_id} sent {} times",
            sent(event_id)
        );
    }
    assert_eq!(sent(&marker), 1, "the event at `until` was replayed");
    Ok(())
}
