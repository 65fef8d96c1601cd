//! The SSRF guard also runs at connect time, after DNS resolution: a name that passed when the
//! endpoint was created but resolves to a refused address when delivering (DNS rebinding) gets
//! nothing. Its own binary: its Herald's ingest allows loopback targets, its delivery does not.

use herald_tests::receiver::Receiver;
use herald_tests::{start_with, Api};
use serde_json::json;

#[tokio::test]
async fn a_target_that_resolves_to_a_refused_address_at_connect_time_gets_nothing(
) -> anyhow::Result<()> {
    let api = Api::with(start_with(|config| {
        config.delivery.allowed_target_cidrs = String::new();
    })?);
    let tenant = api.create_tenant("rebinding").await?;
    let receiver = Receiver::start().await;
    // `localhost` is resolved again for every connection the worker makes.
    let url = receiver.url.replace("127.0.0.1", "localhost");
    api.create_endpoint(&tenant, json!({ "url": url })).await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(event["deliveries"][0]["status"], "failed");
    assert_eq!(event["deliveries"][0]["last_error_code"], "target_refused");
    assert_eq!(receiver.count(), 0);
    Ok(())
}
