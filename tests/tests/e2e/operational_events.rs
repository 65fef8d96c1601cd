//! Herald's own events (`herald.…`): each type is delivered, signed, to the endpoints that list
//! it and to no other; they are in the event history; producers cannot forge them; and an
//! operational endpoint that fails hears nothing about itself (no feedback loop).
//! Test stack: breakers open after 3 consecutive failures, for 1 s.

use herald_tests::receiver::{ReceivedRequest, Receiver, Reply};
use herald_tests::{signature, wait_until, Api, Endpoint, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

const ALL_TYPES: [&str; 4] = [
    "herald.endpoint.disabled",
    "herald.endpoint.circuit_opened",
    "herald.endpoint.circuit_closed",
    "herald.delivery.dead_lettered",
];

/// The operational events a receiver got, with their bodies, checked to be signed with the
/// endpoint's secret.
fn operational(receiver: &Receiver, endpoint: &Endpoint) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .filter(|request| {
            request.json()["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("herald."))
        })
        .map(|request: &ReceivedRequest| {
            assert!(
                signature::verify(
                    &endpoint.secret,
                    request.header("webhook-id"),
                    request.header("webhook-timestamp"),
                    &request.body,
                    request.header("webhook-signature"),
                ),
                "operational event not signed with the endpoint's secret: {}",
                request.json()
            );
            let mut body = request.json();
            body["webhook_id"] = json!(request.header("webhook-id"));
            body
        })
        .collect()
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == event_type)
        .collect()
}

async fn operational_endpoint(
    api: &Api,
    tenant: &Tenant,
    receiver: &Receiver,
    extra: Value,
) -> anyhow::Result<Endpoint> {
    let mut body = json!({ "url": receiver.url, "events": ALL_TYPES });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    api.create_endpoint(tenant, body).await
}

#[tokio::test]
async fn each_operational_event_reaches_only_the_endpoints_that_list_it() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("operational").await?;
    let operations = Receiver::start().await;
    let operations_endpoint = operational_endpoint(&api, &tenant, &operations, json!({})).await?;
    // Subscribed to everything a producer sends: Herald's own events are not for it.
    let catch_all = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": catch_all.url }))
        .await?;

    // Three failures dead-letter three deliveries (one attempt each) and open the breaker.
    let failing = Receiver::start().await;
    failing.script((0..3).map(|_| Reply::status(503)));
    let failing_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": failing.url, "events": ["ops.test"], "retry_policy": { "max_attempts": 1 } }),
        )
        .await?;
    let mut dead = Vec::new();
    for index in 0..3 {
        dead.push(
            api.send_event(
                &tenant,
                json!({ "type": "ops.test", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    for event_id in &dead {
        api.wait_for_event_status(&tenant, event_id, "failed")
            .await?;
    }
    // The next one waits for the breaker's probe, which succeeds and closes it.
    let recovered = api
        .send_event(
            &tenant,
            json!({ "type": "ops.test", "payload": { "index": 3 } }),
        )
        .await?;
    api.wait_for_event_status(&tenant, &recovered, "delivered")
        .await?;
    // A receiver that answers 410 Gone gets its endpoint disabled.
    let gone = Receiver::start().await;
    gone.script([Reply::status(410)]);
    let gone_endpoint = api
        .create_endpoint(&tenant, json!({ "url": gone.url, "events": ["ops.gone"] }))
        .await?;
    api.send_event(&tenant, json!({ "type": "ops.gone", "payload": {} }))
        .await?;

    let events = wait_until(
        Duration::from_secs(20),
        "every operational event delivered",
        || async {
            let events = operational(&operations, &operations_endpoint);
            let done = of_type(&events, "herald.delivery.dead_lettered").len() == 3
                && of_type(&events, "herald.endpoint.circuit_opened").len() == 1
                && of_type(&events, "herald.endpoint.circuit_closed").len() == 1
                && of_type(&events, "herald.endpoint.disabled").len() == 1;
            done.then_some(events)
        },
    )
    .await?;

    let mut dead_lettered: Vec<String> = of_type(&events, "herald.delivery.dead_lettered")
        .iter()
        .map(|event| {
            let data = &event["data"];
            assert_eq!(data["endpoint_id"], failing_endpoint.endpoint_id, "{event}");
            assert_eq!(data["event_type"], "ops.test", "{event}");
            assert_eq!(data["attempts"], 1, "{event}");
            assert_eq!(data["last_error"]["class"], "http_5xx", "{event}");
            assert_eq!(data["last_error"]["http_status"], 503, "{event}");
            assert!(data["attempt_id"].is_string(), "{event}");
            data["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    dead_lettered.sort();
    dead.sort();
    assert_eq!(dead_lettered, dead);
    let opened = &of_type(&events, "herald.endpoint.circuit_opened")[0]["data"];
    assert_eq!(opened["endpoint_id"], failing_endpoint.endpoint_id);
    assert_eq!(opened["consecutive_failures"], 3);
    let closed = &of_type(&events, "herald.endpoint.circuit_closed")[0]["data"];
    assert_eq!(closed["endpoint_id"], failing_endpoint.endpoint_id);
    let disabled = &of_type(&events, "herald.endpoint.disabled")[0]["data"];
    assert_eq!(disabled["endpoint_id"], gone_endpoint.endpoint_id);
    assert!(
        disabled["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{disabled}"
    );

    // They are events of the tenant like any other: listed, and delivered to one endpoint.
    let (status, listed) = api
        .get(&tenant, "/v1/events?type=herald.delivery.dead_lettered")
        .await?;
    assert_eq!(status, 200, "{listed}");
    let listed_ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|event| event["event_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for event in of_type(&events, "herald.delivery.dead_lettered") {
        let event_id = event["webhook_id"].as_str().unwrap_or_default();
        assert!(listed_ids.contains(&event_id), "{event_id} not in {listed}");
        let detail = api
            .wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
        let deliveries = detail["deliveries"].as_array().map(Vec::len);
        assert_eq!(deliveries, Some(1), "only the listing endpoint: {detail}");
    }
    // Counted by type on /metrics (other tests add theirs: at least this test's).
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for (event_type, at_least) in [
        ("herald.delivery.dead_lettered", 3.0),
        ("herald.endpoint.circuit_opened", 1.0),
        ("herald.endpoint.circuit_closed", 1.0),
        ("herald.endpoint.disabled", 1.0),
    ] {
        let series = format!("herald_operational_events_total{{event_type=\"{event_type}\"}} ");
        let counted = metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(counted >= at_least, "{series}{counted}");
    }
    assert!(
        catch_all
            .requests()
            .iter()
            .all(|request| !request.json()["type"]
                .as_str()
                .unwrap_or("")
                .starts_with("herald.")),
        "an endpoint without a filter got an operational event"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_operational_endpoint_hears_nothing_about_itself() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("operational-loop").await?;
    let operations = Receiver::start().await;
    operations.fail_every(1);
    let operations_endpoint = operational_endpoint(
        &api,
        &tenant,
        &operations,
        json!({ "retry_policy": { "max_attempts": 2, "initial_delay_ms": 100 } }),
    )
    .await?;
    let failing = Receiver::start().await;
    failing.fail_every(1);
    let failing_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": failing.url, "events": ["ops.loop"], "retry_policy": { "max_attempts": 1 } }),
        )
        .await?;

    // One dead letter: its announcement fails at the operational endpoint twice (more
    // failures in a row than open a breaker) and is dead-lettered itself.
    let first = api
        .send_event(
            &tenant,
            json!({ "type": "ops.loop", "payload": { "n": 1 } }),
        )
        .await?;
    api.wait_for_event_status(&tenant, &first, "failed").await?;
    let announcement = wait_until(
        Duration::from_secs(20),
        "the announcement tried twice",
        || async {
            let requests = operations.requests();
            (requests.len() >= 2).then(|| requests[0].header("webhook-id").to_owned())
        },
    )
    .await?;
    api.wait_for_event_status(&tenant, &announcement, "failed")
        .await?;

    // Facts are announced in log order: once a later dead letter's announcement is in the
    // history, anything the first announcement's failure had caused would be there too.
    let second = api
        .send_event(
            &tenant,
            json!({ "type": "ops.loop", "payload": { "n": 2 } }),
        )
        .await?;
    api.wait_for_event_status(&tenant, &second, "failed")
        .await?;
    let operational_events = wait_until(
        Duration::from_secs(20),
        "the second dead letter announced",
        || async {
            let mut found = Vec::new();
            for event_type in ALL_TYPES {
                let (_, listed) = api
                    .get(&tenant, &format!("/v1/events?type={event_type}"))
                    .await
                    .ok()?;
                found.extend(listed["data"].as_array().cloned().unwrap_or_default());
            }
            let announced_second = found.iter().any(|event| {
                event["type"] == "herald.delivery.dead_lettered"
                    && event["event_id"] != announcement
            });
            announced_second.then_some(found)
        },
    )
    .await?;
    assert_eq!(
        operational_events.len(),
        2,
        "one announcement per producer dead letter, nothing about the operational endpoint: {operational_events:?}"
    );
    for event in &operational_events {
        let (_, detail) = api
            .get(
                &tenant,
                &format!(
                    "/v1/events/{}",
                    event["event_id"].as_str().unwrap_or_default()
                ),
            )
            .await?;
        assert_eq!(
            detail["payload"]["endpoint_id"], failing_endpoint.endpoint_id,
            "{detail}"
        );
    }
    // Four failures in a row, yet the operational endpoint's breaker stayed closed.
    let pool = api.postgres().await?;
    let breaker: Option<(String,)> = sqlx::query_as(
        "SELECT breaker_state FROM endpoint_health_view WHERE endpoint_id = $1::uuid",
    )
    .bind(&operations_endpoint.endpoint_id)
    .fetch_optional(&pool)
    .await?;
    assert!(
        breaker.as_ref().is_none_or(|(state,)| state == "closed"),
        "{breaker:?}"
    );
    wait_until(
        Duration::from_secs(20),
        "the second announcement tried twice",
        || async { (operations.count() >= 4).then_some(()) },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn producers_cannot_send_herald_types_and_endpoints_list_only_real_ones() -> anyhow::Result<()>
{
    let api = Api::new();
    let tenant = api.create_tenant("operational-names").await?;
    let receiver = Receiver::start().await;
    let (status, problem) = api
        .post_event(
            &tenant,
            json!({ "type": "herald.delivery.dead_lettered", "payload": {} }),
        )
        .await?;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("herald."),
        "{problem}"
    );
    let (status, problem) = api
        .post(
            &tenant,
            "/v1/webhook_endpoints",
            json!({ "url": receiver.url, "events": ["invoice.paid", "herald.endpoint.dissabled"] }),
        )
        .await?;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("herald.endpoint.disabled"),
        "the answer lists the real names: {problem}"
    );
    operational_endpoint(&api, &tenant, &receiver, json!({})).await?;
    Ok(())
}
