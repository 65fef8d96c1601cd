//! Replays from the log (`POST /v1/replays`, ADR 0014), end to end against the real stack with
//! real receivers: which events and endpoints a replay selects in each mode, dry runs, the
//! replay's record, bad requests and tenant isolation.

use anyhow::{Context, Result};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

/// `POST /v1/replays`: status, Location header, body.
async fn post_replay(api: &Api, tenant: &Tenant, body: Value) -> Result<(u16, String, Value)> {
    let response = api
        .http
        .post(api.url("/v1/replays"))
        .bearer_auth(&tenant.api_key)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{body}");
    }
    Ok((status, location, body))
}

/// Sends an event, waits until it is delivered, and returns its id and acceptance time.
async fn delivered_event(
    api: &Api,
    tenant: &Tenant,
    event_type: &str,
) -> Result<(String, DateTime<Utc>)> {
    let event_id = api
        .send_event(tenant, json!({ "type": event_type, "payload": { "n": 1 } }))
        .await?;
    let event = api
        .wait_for_event_status(tenant, &event_id, "delivered")
        .await?;
    let accepted_at = event["accepted_at"]
        .as_str()
        .context("accepted_at")?
        .parse::<DateTime<Utc>>()?;
    Ok((event_id, accepted_at))
}

fn received(receiver: &Receiver, event_id: &str) -> usize {
    receiver
        .requests()
        .iter()
        .filter(|request| request.header("webhook-id") == event_id)
        .count()
}

/// Waits until `receiver` got `event_id` `times` times.
async fn wait_received(receiver: &Receiver, event_id: &str, times: usize) -> Result<()> {
    wait_until(
        Duration::from_secs(30),
        &format!("{event_id} received {times} times"),
        || async { (received(receiver, event_id) >= times).then_some(()) },
    )
    .await
}

/// Waits until the replay is shown finished, and returns it.
async fn wait_finished(api: &Api, tenant: &Tenant, location: &str) -> Result<Value> {
    wait_until(
        Duration::from_secs(30),
        &format!("{location} to be finished"),
        || async {
            let (status, body) = api.get(tenant, location).await.ok()?;
            (status == 200 && body["status"] == "finished").then_some(body)
        },
    )
    .await
}

/// The accepted times are read back from the read model, rounded to microseconds; a range
/// bound a millisecond before an event's time puts that event safely on the right side.
fn just_before(at: DateTime<Utc>) -> String {
    (at - TimeDelta::milliseconds(1)).to_rfc3339()
}

#[tokio::test]
async fn as_then_replays_the_range_to_the_endpoints_each_event_had() -> Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("log-replay-as-then").await?;
    let every = Receiver::start().await;
    let orders = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": every.url }))
        .await?;
    api.create_endpoint(
        &tenant,
        json!({ "url": orders.url, "events": ["order.created"] }),
    )
    .await?;
    let (before, _) = delivered_event(&api, &tenant, "order.created").await?;
    let (first, first_at) = delivered_event(&api, &tenant, "order.created").await?;
    let (second, _) = delivered_event(&api, &tenant, "invoice.paid").await?;
    let (after, after_at) = delivered_event(&api, &tenant, "order.created").await?;
    wait_received(&orders, &after, 1).await?;

    let (status, location, body) = post_replay(
        &api,
        &tenant,
        json!({ "since": just_before(first_at), "until": just_before(after_at), "mode": "as_then" }),
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    let replay_id = body["replay_id"].as_str().context("replay_id")?;
    assert_eq!(location, format!("/v1/replays/{replay_id}"));

    // Again, with the same webhook-id, to the endpoints they had.
    wait_received(&every, &first, 2).await?;
    wait_received(&every, &second, 2).await?;
    wait_received(&orders, &first, 2).await?;
    let replay = wait_finished(&api, &tenant, &location).await?;
    assert_eq!(replay["replay_id"], replay_id);
    assert_eq!(replay["mode"], "as_then");
    assert_eq!(replay["events_replayed"], 2, "{replay}");
    assert_eq!(replay["deliveries_scheduled"], 3, "{replay}");
    assert!(replay["through_sequence"].as_i64() > Some(0), "{replay}");
    assert!(replay["finished_at"].is_string(), "{replay}");
    // Events outside the range are not sent again; nothing went to a non-subscriber.
    for outside in [&before, &after] {
        assert_eq!(received(&every, outside), 1, "{outside} replayed");
        assert_eq!(received(&orders, outside), 1, "{outside} replayed");
    }
    assert_eq!(received(&orders, &second), 0);
    assert_eq!(received(&every, &first), 2);

    // Listed, and only for its tenant.
    let (status, list) = api.get(&tenant, "/v1/replays").await?;
    assert_eq!(status, 200);
    assert_eq!(list["replays"][0]["replay_id"], replay_id, "{list}");
    let other = api.create_tenant("log-replay-other").await?;
    let (status, problem) = api.get(&other, &location).await?;
    assert_eq!(status, 404, "{problem}");
    let (status, list) = api.get(&other, "/v1/replays").await?;
    assert_eq!(status, 200);
    assert_eq!(list["replays"], json!([]));
    Ok(())
}

#[tokio::test]
async fn as_now_replays_to_todays_enabled_endpoints() -> Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("log-replay-as-now").await?;
    let original = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": original.url }))
        .await?;
    let (event, accepted_at) = delivered_event(&api, &tenant, "user.created").await?;

    // An endpoint disabled since (its receiver answered 410 Gone).
    let gone = Receiver::start().await;
    gone.script([Reply::status(410)]);
    let disabled = api
        .create_endpoint(&tenant, json!({ "url": gone.url }))
        .await?;
    api.send_event(&tenant, json!({ "type": "other.thing", "payload": {} }))
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", disabled.endpoint_id);
    wait_until(Duration::from_secs(20), "endpoint disabled", || async {
        let (status, body) = api.get(&tenant, &path).await.ok()?;
        (status == 200 && body["enabled"] == false).then_some(())
    })
    .await?;
    // An endpoint created after the event, and one whose filter does not match it.
    let newcomer = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": newcomer.url }))
        .await?;
    let unrelated = Receiver::start().await;
    api.create_endpoint(
        &tenant,
        json!({ "url": unrelated.url, "events": ["invoice.paid"] }),
    )
    .await?;

    let until = (accepted_at + TimeDelta::milliseconds(1)).to_rfc3339();
    let (status, location, body) = post_replay(
        &api,
        &tenant,
        json!({ "since": just_before(accepted_at), "until": until, "mode": "as_now",
                "events_per_second": 10 }),
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    wait_received(&newcomer, &event, 1).await?;
    wait_received(&original, &event, 2).await?;
    let replay = wait_finished(&api, &tenant, &location).await?;
    assert_eq!(replay["mode"], "as_now");
    assert_eq!(replay["events_per_second"], 10);
    assert_eq!(replay["events_replayed"], 1, "{replay}");
    assert_eq!(replay["deliveries_scheduled"], 2, "{replay}");
    assert_eq!(received(&gone, &event), 0, "sent to a disabled endpoint");
    assert_eq!(
        received(&unrelated, &event),
        0,
        "sent to an endpoint not subscribed"
    );
    Ok(())
}

#[tokio::test]
async fn a_dry_run_counts_what_would_be_sent_and_sends_nothing() -> Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("log-replay-dry-run").await?;
    let every = Receiver::start().await;
    let bees = Receiver::start().await;
    let every_endpoint = api
        .create_endpoint(&tenant, json!({ "url": every.url }))
        .await?;
    let bee_endpoint = api
        .create_endpoint(&tenant, json!({ "url": bees.url, "events": ["b"] }))
        .await?;
    let (_, first_at) = delivered_event(&api, &tenant, "a").await?;
    delivered_event(&api, &tenant, "b").await?;
    let (last, last_at) = delivered_event(&api, &tenant, "b").await?;
    wait_received(&bees, &last, 1).await?;
    let received_before = (every.count(), bees.count());
    let range = |extra: Value| {
        let mut body = json!({
            "since": just_before(first_at),
            "until": (last_at + TimeDelta::milliseconds(1)).to_rfc3339(),
            "mode": "as_then",
            "dry_run": true,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let count_of = |body: &Value, endpoint_id: &str| {
        body["endpoints"]
            .as_array()
            .and_then(|endpoints| {
                endpoints
                    .iter()
                    .find(|endpoint| endpoint["endpoint_id"] == endpoint_id)
            })
            .map_or(0, |endpoint| endpoint["deliveries"].as_u64().unwrap_or(0))
    };

    let (status, _, body) = post_replay(&api, &tenant, range(json!({}))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["events"], 3, "{body}");
    assert_eq!(body["deliveries"], 5, "{body}");
    assert_eq!(count_of(&body, &every_endpoint.endpoint_id), 3, "{body}");
    assert_eq!(count_of(&body, &bee_endpoint.endpoint_id), 2, "{body}");

    let (status, _, body) =
        post_replay(&api, &tenant, range(json!({ "event_types": ["b"] }))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["events"].clone(), body["deliveries"].clone()),
        (json!(2), json!(4))
    );

    let (status, _, body) = post_replay(
        &api,
        &tenant,
        range(json!({ "endpoint_id": bee_endpoint.endpoint_id, "mode": "as_now" })),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["events"].clone(), body["deliveries"].clone()),
        (json!(2), json!(2))
    );

    // Nothing recorded in the log, nothing listed, nothing sent.
    let subject = api
        .namespace()?
        .replay_subject(tenant.tenant_id.parse::<herald_schemas::TenantId>()?);
    assert_eq!(api.log_messages_on(&subject).await?.0, 0);
    let (_, list) = api.get(&tenant, "/v1/replays").await?;
    assert_eq!(list["replays"], json!([]));
    assert_eq!((every.count(), bees.count()), received_before);
    Ok(())
}

#[tokio::test]
async fn bad_replay_requests_are_problems_that_say_what_to_fix() -> Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("log-replay-bad-input").await?;
    let now = Utc::now();
    let hour_ago = (now - TimeDelta::hours(1)).to_rfc3339();
    let minute_ago = (now - TimeDelta::minutes(1)).to_rfc3339();
    // Ranges that hold no events are empty, not wrong; one reaching into the future ends now.
    for (since, until, events) in [
        (&minute_ago, &hour_ago, Some(0)),
        (&minute_ago, &minute_ago, Some(0)),
        (&hour_ago, &(now + TimeDelta::hours(1)).to_rfc3339(), None),
    ] {
        let body = json!({ "since": since, "until": until, "mode": "as_then", "dry_run": true });
        let (status, _, counted) = post_replay(&api, &tenant, body.clone()).await?;
        assert_eq!(status, 200, "{body} -> {counted}");
        if let Some(events) = events {
            assert_eq!(counted["events"], events, "{body} -> {counted}");
        }
    }
    let (status, _, problem) = post_replay(
        &api,
        &tenant,
        json!({ "since": hour_ago, "until": minute_ago, "mode": "as_now",
                "endpoint_id": uuid::Uuid::now_v7() }),
    )
    .await?;
    assert_eq!(status, 404, "{problem}");
    let cases = [
        (
            json!({ "since": hour_ago, "until": minute_ago, "mode": "as_it_was" }),
            "mode",
        ),
        (
            json!({ "since": hour_ago, "until": minute_ago, "mode": "as_now", "event_types": [] }),
            "event_types",
        ),
        (
            json!({ "since": hour_ago, "until": minute_ago, "mode": "as_now", "events_per_second": 0 }),
            "events_per_second",
        ),
        (
            json!({ "since": "yesterday", "until": minute_ago, "mode": "as_now" }),
            "since",
        ),
    ];
    for (body, field) in cases {
        let (status, _, problem) = post_replay(&api, &tenant, body.clone()).await?;
        assert_eq!(status, 422, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.len() > 10),
            "{problem}"
        );
    }
    let response = api
        .http
        .post(api.url("/v1/replays"))
        .bearer_auth(&tenant.api_key)
        .header("content-type", "application/json")
        .body("{\"since\": ")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let (status, problem) = api.get(&tenant, "/v1/replays/not-a-uuid").await?;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = api
        .get(&tenant, &format!("/v1/replays/{}", uuid::Uuid::now_v7()))
        .await?;
    assert_eq!(status, 404, "{problem}");
    Ok(())
}

#[tokio::test]
async fn openapi_describes_replays_from_the_log() -> Result<()> {
    let api = Api::new();
    let document: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    for (path, method) in [
        ("/v1/replays", "post"),
        ("/v1/replays", "get"),
        ("/v1/replays/{replay_id}", "get"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    for schema in ["LogReplayRequest", "LogReplayView", "LogReplayDryRun"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    Ok(())
}
