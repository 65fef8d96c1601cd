//! Every read and write is scoped by the caller's tenant.

use herald_tests::receiver::Receiver;
use herald_tests::Api;
use serde_json::json;

#[tokio::test]
async fn tenants_cannot_see_or_use_each_others_data() -> anyhow::Result<()> {
    let api = Api::new();
    let owner = api.create_tenant("owner").await?;
    let stranger = api.create_tenant("stranger").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(&owner, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(
            &owner,
            json!({ "type": "secret.thing", "payload": {"pin": 1234} }),
        )
        .await?;
    api.wait_for_event_status(&owner, &event_id, "delivered")
        .await?;

    let (status, problem) = api
        .get(&stranger, &format!("/v1/events/{event_id}"))
        .await?;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
    let (status, page) = api
        .get(&stranger, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]));
    let (status, _) = api
        .get(
            &stranger,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, list) = api.get(&stranger, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]));

    // Targeting another tenant's endpoint is refused as if it did not exist, and delivers
    // nothing.
    let (status, problem) = api
        .post_event(
            &stranger,
            json!({ "type": "t", "payload": {}, "target_endpoints": [endpoint.endpoint_id] }),
        )
        .await?;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("target_endpoints[0]")),
        "{problem}"
    );

    // The owner sees its own endpoint, without its secret.
    let (status, own) = api
        .get(
            &owner,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(own["url"], receiver.url);
    assert!(own.get("secret").is_none());
    assert_eq!(receiver.count(), 1);
    Ok(())
}
