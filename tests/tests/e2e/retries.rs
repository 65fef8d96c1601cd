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

    // Dead letters are listed with their reason.
    let (status, page) = api
        .get(&tenant, "/v1/deliveries?outcome=dead_lettered,expired")
        .await?;
    assert_eq!(status, 200);
    let letters = page["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{page}");
    assert_eq!(letters[0]["event_id"], event_id.as_str());
    assert_eq!(letters[0]["attempt_number"], 4);
    assert_eq!(letters[0]["error_code"], "http_5xx");
    assert_eq!(letters[0]["http_status"], 502);
    let (_, later) = api
        .get(
            &tenant,
            "/v1/deliveries?outcome=dead_lettered&since=2999-01-01T00:00:00Z",
        )
        .await?;
    assert_eq!(later["data"], serde_json::json!([]));
    let (status, problem) = api.get(&tenant, "/v1/deliveries?outcome=lost").await?;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "outcome");
    let (status, problem) = api.get(&tenant, "/v1/deliveries?since=yesterday").await?;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "since");
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

#[tokio::test]
async fn an_endpoint_can_have_its_own_retry_policy() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("own-policy").await?;
    let receiver = Receiver::start().await;
    receiver.script((0..10).map(|_| Reply::status(500)));
    // The service default here is 4 attempts starting at 300 ms.
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({
                "url": receiver.url,
                "retry_policy": { "max_attempts": 2, "initial_delay_ms": 1500 }
            }),
        )
        .await?;
    assert_eq!(
        endpoint.body["retry_policy"],
        json!({ "max_attempts": 2, "initial_delay_ms": 1500 })
    );
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "dead_lettered");
    assert_eq!(event["deliveries"][0]["attempt_count"], 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    // Equal jitter: at least half the configured delay.
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= std::time::Duration::from_millis(740),
        "retried after {gap:?}"
    );

    let (_, shown) = api
        .get(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
        )
        .await?;
    assert_eq!(shown["retry_policy"]["max_attempts"], 2);
    assert_eq!(shown["ordered"], false);
    Ok(())
}

#[tokio::test]
async fn deliveries_matching_a_filter_are_replayed_in_bulk() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("bulk-replay").await?;
    let failing = Receiver::start().await;
    failing.script((0..6).map(|_| Reply::status(400)));
    let other = Receiver::start().await;
    other.script((0..6).map(|_| Reply::status(400)));
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": failing.url, "events": ["a"] }))
        .await?;
    api.create_endpoint(&tenant, json!({ "url": other.url, "events": ["a"] }))
        .await?;
    let mut event_ids = Vec::new();
    let mut accepted_at = Vec::new();
    for index in 0..6 {
        let event_id = api
            .send_event(
                &tenant,
                json!({ "type": "a", "payload": { "index": index } }),
            )
            .await?;
        let event = api
            .wait_for_event_status(&tenant, &event_id, "failed")
            .await?;
        accepted_at.push(event["accepted_at"].as_str().unwrap_or_default().to_owned());
        event_ids.push(event_id);
    }

    let replay = |body: serde_json::Value| {
        api.http
            .post(api.url("/v1/deliveries/replay"))
            .bearer_auth(&tenant.api_key)
            .json(&body)
            .send()
    };
    let refused = replay(json!({ "status": ["retrying"] })).await?;
    assert_eq!(refused.status(), 422);
    let problem: serde_json::Value = refused.json().await?;
    assert!(problem.to_string().contains("status[0]"), "{problem}");

    // Events 2..6 to the first endpoint only, two events per request, chained by cursor.
    let filter = json!({
        "endpoint_id": endpoint.endpoint_id,
        "status": ["failed"],
        "since": accepted_at[2],
        "limit": 2,
    });
    let mut replayed = Vec::new();
    let mut body = filter.clone();
    loop {
        let response = replay(body.clone()).await?;
        assert_eq!(response.status(), 202);
        let page: serde_json::Value = response.json().await?;
        replayed.push((page["events"].as_u64(), page["deliveries"].as_u64()));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                body = filter.clone();
                body["cursor"] = json!(cursor);
            }
            None => break,
        }
    }
    assert_eq!(replayed, vec![(Some(2), Some(2)), (Some(2), Some(2))]);
    herald_tests::wait_until(
        std::time::Duration::from_secs(20),
        "replayed deliveries to arrive",
        || async { (failing.count() == 10).then_some(()) },
    )
    .await?;
    let replayed_ids: std::collections::HashSet<String> = failing.requests()[6..]
        .iter()
        .map(|request| request.header("webhook-id").to_owned())
        .collect();
    let expected: std::collections::HashSet<String> = event_ids[2..].iter().cloned().collect();
    assert_eq!(replayed_ids, expected);
    // The other endpoint's deliveries were not part of the filter.
    assert_eq!(other.count(), 6);
    Ok(())
}

/// Retries due within a second share the shortest delay tier, where due times do not follow
/// the append order: a 100 ms retry appended just after a 900 ms one must not wait for it.
#[tokio::test]
async fn a_short_retry_does_not_wait_behind_a_longer_one() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("retry-order").await?;
    let slow = Receiver::start().await;
    slow.script([Reply::status(503)]);
    let quick = Receiver::start().await;
    quick.script([Reply::status(503)]);
    for (receiver, event_type, delay_ms) in [(&slow, "r.slow", 900), (&quick, "r.quick", 100)] {
        api.create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "events": [event_type],
                    "retry_policy": { "initial_delay_ms": delay_ms, "multiplier": 1.0 } }),
        )
        .await?;
    }
    let slow_event = api
        .send_event(&tenant, json!({ "type": "r.slow", "payload": {} }))
        .await?;
    let quick_event = api
        .send_event(&tenant, json!({ "type": "r.quick", "payload": {} }))
        .await?;
    for event_id in [&slow_event, &quick_event] {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }
    let requests = quick.requests();
    let gap = requests[1].received_at - requests[0].received_at;
    // 100 ms plus jitter; behind the slow retry it would have been about 900 ms.
    assert!(
        gap < std::time::Duration::from_millis(600),
        "the quick retry came {gap:?} after its first attempt"
    );
    Ok(())
}
