//! Failed attempts are retried with backoff; final failures are not; every attempt is
//! recorded. (The test stack's retry policy: 300 ms initial delay, doubling, 4 attempts.)

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::Api;
use serde_json::json;

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_succeeds() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("retry").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500), Reply::status(503)]);
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {"n": 1} }))
        .await?;

    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"][0]["attempt_count"], 3);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|request| request.header("webhook-id") == event_id));
    let first_gap = requests[1].received_at - requests[0].received_at;
    assert!(first_gap.as_millis() >= 140, "retried after {first_gap:?}");

    let (_, page) = api
        .get(
            &tenant,
            &format!(
                "/v1/deliveries?event_id={event_id}&endpoint_id={}",
                endpoint.endpoint_id
            ),
        )
        .await?;
    let attempts = page["data"].as_array().cloned().unwrap_or_default();
    let summary: Vec<(i64, i64, String)> = attempts
        .iter()
        .map(|attempt| {
            (
                attempt["attempt_number"].as_i64().unwrap_or(0),
                attempt["http_status"].as_i64().unwrap_or(0),
                attempt["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, 200, "succeeded".to_owned()),
            (2, 503, "retry_scheduled".to_owned()),
            (1, 500, "retry_scheduled".to_owned()),
        ]
    );
    assert_eq!(attempts[2]["error_code"], "http_5xx");
    assert!(attempts[2]["next_attempt_at"].is_string());

    // Pages of one, newest first, chained by cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/deliveries?event_id={event_id}&limit=1&cursor={cursor}"),
            None => format!("/v1/deliveries?event_id={event_id}&limit=1"),
        };
        let (status, page) = api.get(&tenant, &path).await?;
        assert_eq!(status, 200);
        seen.push(page["data"][0]["attempt_number"].as_i64().unwrap_or(0));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![3, 2, 1]);
    Ok(())
}

#[tokio::test]
async fn a_final_client_error_is_not_retried() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("final").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(400)]);
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "failed");
    assert_eq!(event["deliveries"][0]["last_error_code"], "http_4xx");
    assert_eq!(receiver.count(), 1);
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_never_recovers_is_dead_lettered_after_the_last_attempt(
) -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("dead").await?;
    let receiver = Receiver::start().await;
    receiver.script((0..10).map(|_| Reply::status(502)));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "dead_lettered");
    assert_eq!(event["deliveries"][0]["attempt_count"], 4);
    assert_eq!(receiver.count(), 4);
    Ok(())
}

#[tokio::test]
async fn a_failed_delivery_can_be_replayed() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("replay").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(400)]);
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {"n": 1} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "failed")
        .await?;

    let replay = |tenant: &herald_tests::Tenant, body: serde_json::Value| {
        api.http
            .post(api.url(&format!("/v1/events/{event_id}/replay")))
            .bearer_auth(&tenant.api_key)
            .json(&body)
            .send()
    };
    let stranger = api.create_tenant("replay-stranger").await?;
    assert_eq!(replay(&stranger, json!({})).await?.status(), 404);
    let unknown_endpoint = json!({ "endpoint_id": uuid::Uuid::now_v7() });
    assert_eq!(replay(&tenant, unknown_endpoint).await?.status(), 404);

    let response = replay(&tenant, json!({ "endpoint_id": endpoint.endpoint_id })).await?;
    assert_eq!(response.status(), 202);
    let accepted: serde_json::Value = response.json().await?;
    assert_eq!(accepted["endpoint_ids"], json!([endpoint.endpoint_id]));

    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "succeeded");
    assert_eq!(event["deliveries"][0]["attempt_count"], 2);
    let (_, page) = api
        .get(&tenant, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    let outcomes: Vec<(i64, String)> = page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|attempt| {
            (
                attempt["attempt_number"].as_i64().unwrap_or(0),
                attempt["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![(2, "succeeded".to_owned()), (1, "failed".to_owned())]
    );
    assert_eq!(receiver.count(), 2);
    Ok(())
}
