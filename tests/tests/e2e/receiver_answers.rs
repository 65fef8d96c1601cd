//! How each kind of answer from a real receiver is treated: 429 with `Retry-After`, no answer
//! in time, redirects, large responses, and the bound on requests in flight to one endpoint.
//! (The test stack: 2 s request timeout, retries from 300 ms, at most 2 s apart.)

use futures::StreamExt;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api, Tenant};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The event's attempts, oldest first.
async fn attempts(api: &Api, tenant: &Tenant, event_id: &str) -> anyhow::Result<Vec<Value>> {
    let (_, page) = api
        .get(tenant, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    let mut attempts = page["data"].as_array().cloned().unwrap_or_default();
    attempts.reverse();
    Ok(attempts)
}

async fn one_endpoint(api: &Api, name: &str) -> anyhow::Result<(Tenant, Receiver)> {
    let tenant = api.create_tenant(name).await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    Ok((tenant, receiver))
}

#[tokio::test]
async fn retry_after_on_a_429_is_honoured() -> anyhow::Result<()> {
    let api = Api::new();
    let (tenant, receiver) = one_endpoint(&api, "retry-after").await?;
    receiver.script([Reply::status(429).header("retry-after", "2")]);
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    // Without the header the retry would come after 150-300 ms.
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(gap >= Duration::from_millis(1_900), "retried after {gap:?}");
    let attempts = attempts(&api, &tenant, &event_id).await?;
    assert_eq!(attempts[0]["error_code"], "http_429");
    assert_eq!(attempts[0]["outcome"], "retry_scheduled");
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried() -> anyhow::Result<()> {
    let api = Api::new();
    let (tenant, receiver) = one_endpoint(&api, "slow").await?;
    receiver.script([Reply::status(200).after(Duration::from_secs(6))]);
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let attempts = attempts(&api, &tenant, &event_id).await?;
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["error_code"], "timeout");
    assert!(attempts[0]["http_status"].is_null());
    let latency = attempts[0]["latency_ms"].as_i64().unwrap_or(0);
    assert!(
        (1_900..3_000).contains(&latency),
        "gave up after {latency} ms"
    );
    assert_eq!(attempts[1]["outcome"], "succeeded");
    Ok(())
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_never_followed() -> anyhow::Result<()> {
    let api = Api::new();
    let (tenant, receiver) = one_endpoint(&api, "redirect").await?;
    // Pointing back at the receiver itself: following it would show as a second request.
    receiver.script([Reply::status(307).header("location", receiver.url.clone())]);
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "failed");
    assert_eq!(event["deliveries"][0]["last_error_code"], "http_3xx");
    assert_eq!(event["deliveries"][0]["last_http_status"], 307);
    assert_eq!(receiver.count(), 1);
    Ok(())
}

#[tokio::test]
async fn only_the_first_64_kib_of_a_response_are_read_and_hashed() -> anyhow::Result<()> {
    let api = Api::new();
    let (tenant, receiver) = one_endpoint(&api, "large-response").await?;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    receiver.script([Reply::status(200).body(body.clone())]);
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let attempts = attempts(&api, &tenant, &event_id).await?;
    let expected: String = Sha256::digest(&body[..64 * 1024])
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(attempts[0]["response_body_hash"], expected.as_str());
    Ok(())
}

#[tokio::test]
async fn requests_in_flight_to_one_endpoint_are_bounded() -> anyhow::Result<()> {
    let api = Api::new();
    let (tenant, receiver) = one_endpoint(&api, "bounded").await?;
    receiver.set_delay(Duration::from_millis(500));
    let sent = futures::stream::iter(0..200)
        .map(|index| {
            api.send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
        })
        .buffer_unordered(64)
        .filter(|result| futures::future::ready(result.is_ok()))
        .count()
        .await;
    assert_eq!(sent, 200);
    wait_until(
        Duration::from_secs(30),
        "every delivery answered",
        || async { (receiver.answered() >= 200).then_some(()) },
    )
    .await?;
    // HERALD_MAX_IN_FLIGHT_PER_ENDPOINT is 64: concurrent, but never more than that.
    let most = receiver.max_in_flight();
    assert!(
        (16..=64).contains(&most),
        "{most} requests in flight at once"
    );
    Ok(())
}
