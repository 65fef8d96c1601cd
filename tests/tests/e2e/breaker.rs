//! The per-endpoint circuit breaker (test stack: opens after 3 consecutive failures, for 1 s).

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_failing_endpoint_is_left_alone_while_its_breaker_is_open() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("breaker").await?;
    let receiver = Receiver::start().await;
    receiver.script((0..3).map(|_| Reply::status(503)));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let mut event_ids = Vec::new();
    for index in 0..3 {
        event_ids.push(
            api.send_event(
                &tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    wait_until(Duration::from_secs(10), "three failures", || async {
        (receiver.count() >= 3).then_some(())
    })
    .await?;
    // The breaker is open now: new events and the failed ones' retries are parked, not sent.
    for index in 3..6 {
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
    let requests = receiver.requests();
    let third_failure = requests[2].received_at;
    let next = requests[3].received_at;
    assert!(
        next - third_failure >= Duration::from_millis(900),
        "a request came {:?} after the breaker opened",
        next - third_failure
    );
    // Parking is not an attempt: the events sent while it was open took one attempt each.
    for event_id in &event_ids[3..] {
        let (_, event) = api.get(&tenant, &format!("/v1/events/{event_id}")).await?;
        assert_eq!(event["deliveries"][0]["attempt_count"], 1, "{event}");
    }
    assert_eq!(requests.len(), 9, "3 failures, then one success per event");

    // The endpoint's health read model tells the same story: three failures, then six
    // successes in a row, and the breaker closed again.
    let pool = api.postgres().await?;
    let health: (i32, i32, Option<String>, String, bool) = wait_until(
        Duration::from_secs(10),
        "endpoint health projected",
        || async {
            let row: (i32, i32, Option<String>, String, bool) = sqlx::query_as(
                "SELECT success_streak, failure_streak, last_failure_class, breaker_state, \
                   last_success_at > last_failure_at \
                 FROM endpoint_health_view WHERE url = $1",
            )
            .bind(&receiver.url)
            .fetch_one(&pool)
            .await
            .ok()?;
            (row.0 == 6).then_some(row)
        },
    )
    .await?;
    assert_eq!(
        health,
        (6, 0, Some("http_5xx".to_owned()), "closed".to_owned(), true)
    );
    Ok(())
}
