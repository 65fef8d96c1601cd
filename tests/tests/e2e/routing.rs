//! Which endpoints an event reaches: the endpoint's event-type filter, `target_endpoints`,
//! and disabled endpoints.

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn endpoints_receive_only_the_event_types_they_subscribed_to() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("filter").await?;
    let invoices = Receiver::start().await;
    let everything = Receiver::start().await;
    let disabled = Receiver::start().await;
    let invoices_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": invoices.url, "events": ["invoice.paid", "invoice.voided"] }),
        )
        .await?;
    assert_eq!(
        invoices_endpoint.body["events"],
        json!(["invoice.paid", "invoice.voided"])
    );
    api.create_endpoint(&tenant, json!({ "url": everything.url }))
        .await?;
    api.create_endpoint(&tenant, json!({ "url": disabled.url, "enabled": false }))
        .await?;

    let user_event = api
        .send_event(
            &tenant,
            json!({ "type": "user.created", "payload": {"id": 1} }),
        )
        .await?;
    let invoice_event = api
        .send_event(
            &tenant,
            json!({ "type": "invoice.paid", "payload": {"id": 2} }),
        )
        .await?;

    let user = api
        .wait_for_event_status(&tenant, &user_event, "delivered")
        .await?;
    assert_eq!(user["deliveries"].as_array().map(Vec::len), Some(1));
    let invoice = api
        .wait_for_event_status(&tenant, &invoice_event, "delivered")
        .await?;
    assert_eq!(invoice["deliveries"].as_array().map(Vec::len), Some(2));

    let ids = |receiver: &Receiver| -> Vec<String> {
        receiver
            .requests()
            .iter()
            .map(|request| request.header("webhook-id").to_owned())
            .collect()
    };
    assert_eq!(ids(&invoices), vec![invoice_event.clone()]);
    let mut got = ids(&everything);
    got.sort();
    let mut expected = vec![user_event, invoice_event];
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(disabled.count(), 0);
    Ok(())
}

#[tokio::test]
async fn target_endpoints_narrow_an_event_to_the_named_endpoints() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("targets").await?;
    let chosen = Receiver::start().await;
    let other = Receiver::start().await;
    let chosen_endpoint = api
        .create_endpoint(&tenant, json!({ "url": chosen.url }))
        .await?;
    api.create_endpoint(&tenant, json!({ "url": other.url }))
        .await?;

    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {}, "target_endpoints": [chosen_endpoint.endpoint_id] }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"].as_array().map(Vec::len), Some(1));
    wait_until(Duration::from_secs(5), "the chosen receiver", || async {
        (chosen.count() == 1).then_some(())
    })
    .await?;
    assert_eq!(other.count(), 0);
    Ok(())
}

#[tokio::test]
async fn an_event_no_endpoint_wants_is_accepted_and_done() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("nobody").await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": [1, 2] }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"], json!([]));
    assert_eq!(event["payload"], json!([1, 2]));
    Ok(())
}

#[tokio::test]
async fn a_scheduled_event_is_delivered_no_earlier_than_deliver_after() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("scheduled").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let deliver_after = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "t", "payload": {}, "deliver_after": deliver_after }),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.count(), 0, "delivered before deliver_after");
    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"][0]["attempt_count"], 1);
    let (_, page) = api
        .get(&tenant, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    let started: chrono::DateTime<chrono::Utc> = page["data"][0]["started_at"]
        .as_str()
        .unwrap_or("")
        .parse()?;
    assert!(
        started >= deliver_after - chrono::Duration::milliseconds(60),
        "{started} < {deliver_after}"
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_not_made_before_expires_at_is_recorded_as_expired() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("expiring").await?;
    let receiver = Receiver::start().await;
    receiver.script([herald_tests::receiver::Reply::status(503)]);
    receiver.set_delay(Duration::from_millis(400));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "t", "payload": {}, "expires_at": expires_at }),
        )
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "expired");
    assert_eq!(receiver.count(), 1, "nothing is sent after expiry");

    // Already past when it arrives (a producer's clock ahead, a slow network): accepted,
    // recorded, and expired without an attempt.
    let late = api
        .send_event(
            &tenant,
            json!({ "type": "t", "payload": {}, "expires_at": chrono::Utc::now() - chrono::Duration::seconds(1) }),
        )
        .await?;
    let event = api.wait_for_event_status(&tenant, &late, "failed").await?;
    assert_eq!(event["deliveries"][0]["status"], "expired");
    assert_eq!(
        receiver.count(),
        1,
        "nothing is sent for an event already expired"
    );
    Ok(())
}

#[tokio::test]
async fn a_rate_limited_endpoint_receives_at_its_pace_and_nothing_fails() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("paced").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "rate_limit": { "per_second": 5, "burst": 1 } }),
        )
        .await?;
    assert_eq!(
        endpoint.body["rate_limit"],
        json!({ "per_second": 5, "burst": 1 })
    );
    let mut event_ids = Vec::new();
    for index in 0..6 {
        event_ids.push(
            api.send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    for event_id in &event_ids {
        let event = api
            .wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
        assert_eq!(event["deliveries"][0]["attempt_count"], 1);
    }
    let requests = receiver.requests();
    assert_eq!(requests.len(), 6);
    let spread = requests[5].received_at - requests[0].received_at;
    // Five gaps of 200 ms at 5 per second.
    assert!(
        spread >= Duration::from_millis(900),
        "6 deliveries within {spread:?}"
    );

    let (_, view) = api
        .get(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
        )
        .await?;
    assert_eq!(view["rate_limit"], json!({ "per_second": 5, "burst": 1 }));
    let response = api
        .http
        .post(api.url("/v1/webhook_endpoints"))
        .bearer_auth(&tenant.api_key)
        .json(&json!({ "url": receiver.url, "rate_limit": { "per_second": 0 } }))
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    Ok(())
}

#[tokio::test]
async fn a_scheduled_delivery_gets_its_whole_retry_schedule_from_when_it_became_due(
) -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("scheduled-retries").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503), Reply::status(503)]);
    // A 2 s deadline, counted from acceptance, would be over before the first attempt.
    api.create_endpoint(
        &tenant,
        json!({
            "url": receiver.url,
            "retry_policy": { "max_attempts": 5, "initial_delay_ms": 200, "multiplier": 1.0,
                              "max_delay_ms": 200, "deadline_ms": 2000 }
        }),
    )
    .await?;
    let deliver_after = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "t", "payload": {}, "deliver_after": deliver_after }),
        )
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"][0]["attempt_count"], 3);
    assert_eq!(receiver.count(), 3);
    Ok(())
}
