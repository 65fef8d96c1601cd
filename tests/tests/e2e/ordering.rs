//! `ordered: true` endpoints get one delivery at a time, in ingest order, also while a
//! delivery is being retried; unordered endpoints keep their concurrency.

use futures::StreamExt;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::Duration;

const EVENTS: usize = 12;

fn index_of(request: &herald_tests::receiver::ReceivedRequest) -> i64 {
    request.json()["data"]["index"].as_i64().unwrap_or(-1)
}

#[tokio::test]
async fn an_ordered_endpoint_receives_strictly_in_order_under_retries() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("ordered").await?;
    let ordered = Receiver::start().await;
    // Event 0 fails twice, event 4 once with a timeout-like 503 and once with 429: every
    // later event must wait for them.
    ordered.script([
        Reply::status(500),
        Reply::status(500),
        Reply::status(200),
        Reply::status(200),
        Reply::status(200),
        Reply::status(200),
        Reply::status(503),
        Reply::status(429),
    ]);
    // A slow receiver would reveal any second request in flight.
    ordered.set_delay(Duration::from_millis(20));
    let unordered = Receiver::start().await;
    unordered.set_delay(Duration::from_millis(200));
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": ordered.url, "ordered": true }))
        .await?;
    assert_eq!(endpoint.body["ordered"], true);
    api.create_endpoint(&tenant, json!({ "url": unordered.url }))
        .await?;

    // Each event is accepted before the next is sent: that is the order the endpoint owes.
    let mut event_ids = Vec::new();
    for index in 0..EVENTS {
        event_ids.push(
            api.send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    for event_id in &event_ids {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }

    let received: Vec<(i64, u16)> = ordered
        .requests()
        .iter()
        .map(|request| (index_of(request), request.answered_status))
        .collect();
    let indices: Vec<i64> = received.iter().map(|(index, _)| *index).collect();
    assert!(
        indices.windows(2).all(|pair| pair[0] <= pair[1]),
        "out of order: {received:?}"
    );
    let delivered: Vec<i64> = received
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(index, _)| *index)
        .collect();
    assert_eq!(delivered, (0..EVENTS as i64).collect::<Vec<_>>());
    assert_eq!(received.len(), EVENTS + 4, "{received:?}");
    assert_eq!(ordered.max_in_flight(), 1);

    // The attempt history shows the retries where they happened.
    let (_, page) = api
        .get(
            &tenant,
            &format!(
                "/v1/deliveries?event_id={}&endpoint_id={}",
                event_ids[0], endpoint.endpoint_id
            ),
        )
        .await?;
    let outcomes: Vec<&str> = page["data"]
        .as_array()
        .map(|attempts| {
            attempts
                .iter()
                .filter_map(|a| a["outcome"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        ["succeeded", "retry_scheduled", "retry_scheduled"]
    );

    // The unordered endpoint was not held back: its slow answers overlapped.
    assert_eq!(unordered.distinct_ids().len(), EVENTS);
    assert!(unordered.max_in_flight() > 1);
    Ok(())
}

#[tokio::test]
async fn concurrent_producers_get_one_delivery_at_a_time_in_log_order() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("ordered-concurrent").await?;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(5));
    receiver.script([Reply::status(502)]);
    api.create_endpoint(&tenant, json!({ "url": receiver.url, "ordered": true }))
        .await?;
    let accepted: Vec<String> = futures::stream::iter(0..40)
        .map(|index| {
            api.send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    wait_until(Duration::from_secs(30), "every event delivered", || async {
        (receiver.distinct_ids().len() == accepted.len()
            && receiver
                .requests()
                .iter()
                .filter(|r| r.answered_status == 200)
                .count()
                == accepted.len())
        .then_some(())
    })
    .await?;
    assert_eq!(receiver.max_in_flight(), 1);

    // Accepted concurrently, their order is the log's: the order the events were appended,
    // which their ids (time-ordered, assigned at acceptance) do not have to follow, but the
    // log sequence in the read model does.
    let pool = api.postgres().await?;
    let log_order: Vec<String> = sqlx::query_scalar(
        "SELECT event_id::text FROM events WHERE event_id::text = ANY($1) ORDER BY log_sequence",
    )
    .bind(&accepted)
    .fetch_all(&pool)
    .await?;
    let mut first_received = Vec::new();
    for request in receiver.requests() {
        let id = request.header("webhook-id").to_owned();
        if !first_received.contains(&id) {
            first_received.push(id);
        }
    }
    assert_eq!(first_received, log_order);
    Ok(())
}
