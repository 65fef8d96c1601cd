//! No delivery stays overdue, whatever the broker lost or forgot: a scheduled retry that is no
//! longer in the log is noticed (the read model says the delivery is due, long past) and
//! dispatched again. Its own binary: its Herald looks for overdue deliveries every few seconds.

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{start_with, wait_until, Api};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_retry_the_broker_lost_is_dispatched_again() -> anyhow::Result<()> {
    let api = Api::with(start_with(|config| {
        config.delivery.ack_wait_ms = 1_500;
        config.delivery.request_timeout_ms = 2_000;
        config.delivery.overdue_after_ms = 1_000;
    })?);
    let tenant = api.create_tenant("overdue").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503)]);
    api.create_endpoint(
        &tenant,
        json!({
            "url": receiver.url,
            "retry_policy": { "initial_delay_ms": 3000, "multiplier": 1.0, "max_delay_ms": 3000 }
        }),
    )
    .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    wait_until(
        Duration::from_secs(20),
        "the retry to be scheduled",
        || async {
            let (_, event) = api
                .get(&tenant, &format!("/v1/events/{event_id}"))
                .await
                .ok()?;
            (event["deliveries"][0]["status"] == "retrying").then_some(())
        },
    )
    .await?;

    // The broker forgets every scheduled retry.
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut retries = jetstream
        .get_stream(api.namespace()?.retry_stream())
        .await?;
    retries.purge().await?;
    assert_eq!(retries.info().await?.state.messages, 0);

    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["deliveries"][0]["attempt_count"], 2);
    assert_eq!(receiver.count(), 2);
    Ok(())
}

#[tokio::test]
async fn a_consumer_the_broker_lost_is_created_again_without_replaying_history(
) -> anyhow::Result<()> {
    let api = Api::with(start_with(|config| {
        config.delivery.ack_wait_ms = 1_500;
        config.delivery.request_timeout_ms = 2_000;
    })?);
    let tenant = api.create_tenant("lost-consumer").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let mut event_ids = Vec::new();
    for index in 0..5 {
        let event_id = api
            .send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?;
        api.wait_for_event_status(&tenant, &event_id, "delivered")
            .await?;
        event_ids.push(event_id);
    }

    // The broker forgets the first-attempt consumer (and everything it knew).
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let log = jetstream.get_stream(api.namespace()?.log_stream()).await?;
    // nats-server 2.9 may answer "unlinkat …: directory not empty" when the consumer's files
    // are written while they are removed; asking again removes what is left.
    wait_until(Duration::from_secs(10), "the consumer deleted", || async {
        match log.delete_consumer("delivery").await {
            Ok(_) => Some(()),
            Err(_) => log.consumer_info("delivery").await.is_err().then_some(()),
        }
    })
    .await?;

    for index in 5..10 {
        let event_id = api
            .send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?;
        event_ids.push(event_id);
    }
    for event_id in &event_ids[5..] {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }
    // Events delivered before the loss were not handed out again.
    assert_eq!(receiver.count(), 10, "{:?}", receiver.distinct_ids());
    Ok(())
}
