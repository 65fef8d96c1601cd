//! Idempotent ingest: same key and same request → the original event id and one delivery;
//! same key and a different request → 409.

use herald_tests::receiver::Receiver;
use herald_tests::Api;
use serde_json::json;

#[tokio::test]
async fn a_repeated_request_returns_the_original_event_and_delivers_once() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("idempotency").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let body = json!({ "type": "order.created", "payload": {"order": 7, "items": ["a", "b"]}, "idempotency_key": "order-7" });
    let first = api.send_event(&tenant, body.clone()).await?;
    let second = api.send_event(&tenant, body).await?;
    assert_eq!(first, second);

    // The same request written differently (key order, spacing) is the same request.
    let reordered = r#"{"payload": {"items": ["a","b"], "order": 7}, "type": "order.created", "idempotency_key": "order-7"}"#;
    let response = api
        .http
        .post(api.url("/v1/events"))
        .bearer_auth(&tenant.api_key)
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    let third: serde_json::Value = response.json().await?;
    assert_eq!(third["event_id"], first.as_str());

    let (status, problem) = api
        .post_event(&tenant, json!({ "type": "order.created", "payload": {"order": 8}, "idempotency_key": "order-7" }))
        .await?;
    assert_eq!(status, 409);
    assert!(problem["detail"].as_str().unwrap_or("").contains("order-7"));

    api.wait_for_event_status(&tenant, &first, "delivered")
        .await?;
    // A later, different event proves the pipeline has moved past any duplicate.
    let marker = api
        .send_event(&tenant, json!({ "type": "marker", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &marker, "delivered")
        .await?;
    let deliveries_of_first = receiver
        .requests()
        .iter()
        .filter(|request| request.header("webhook-id") == first)
        .count();
    assert_eq!(deliveries_of_first, 1);
    Ok(())
}

#[tokio::test]
async fn the_idempotency_key_header_works_and_keys_are_per_tenant() -> anyhow::Result<()> {
    let api = Api::new();
    let first_tenant = api.create_tenant("idem-a").await?;
    let second_tenant = api.create_tenant("idem-b").await?;
    let send = |tenant: &herald_tests::Tenant, payload: serde_json::Value| {
        api.http
            .post(api.url("/v1/events"))
            .bearer_auth(&tenant.api_key)
            .header("Idempotency-Key", "shared-key")
            .json(&json!({ "type": "t", "payload": payload }))
            .send()
    };
    let first: serde_json::Value = send(&first_tenant, json!({"n": 1})).await?.json().await?;
    let again: serde_json::Value = send(&first_tenant, json!({"n": 1})).await?.json().await?;
    assert_eq!(first["event_id"], again["event_id"]);
    assert_eq!(send(&first_tenant, json!({"n": 2})).await?.status(), 409);
    let other: serde_json::Value = send(&second_tenant, json!({"n": 2})).await?.json().await?;
    assert_ne!(other["event_id"], first["event_id"]);

    let mismatch = api
        .http
        .post(api.url("/v1/events"))
        .bearer_auth(&first_tenant.api_key)
        .header("Idempotency-Key", "one")
        .json(&json!({ "type": "t", "payload": {}, "idempotency_key": "two" }))
        .send()
        .await?;
    assert_eq!(mismatch.status(), 422);
    Ok(())
}
