//! The read side a dashboard stands on: SLIs from ClickHouse that agree with the attempt
//! history, endpoint health, the explanation of where an event went and why, portal
//! sessions that can do what they say and no more, and the operators' cross-tenant view.

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

async fn get_with(api: &Api, token: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = api
        .http
        .get(api.url(path))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn post_with(
    api: &Api,
    token: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let response = api
        .http
        .post(api.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Attempts to `endpoint_id` in the history, by outcome.
async fn attempts_in_history(
    api: &Api,
    tenant: &Tenant,
    endpoint_id: &str,
) -> anyhow::Result<Vec<Value>> {
    let (status, page) = api
        .get(
            tenant,
            &format!("/v1/deliveries?endpoint_id={endpoint_id}&limit=250"),
        )
        .await?;
    anyhow::ensure!(status == 200, "{status} {page}");
    Ok(page["data"].as_array().cloned().unwrap_or_default())
}

async fn sli_when(api: &Api, tenant: &Tenant, query: &str, attempts: u64) -> anyhow::Result<Value> {
    let path = format!("/v1/sli?{query}");
    wait_until(
        Duration::from_secs(30),
        &format!("{path} to count {attempts} attempts"),
        || async {
            let (status, body) = api.get(tenant, &path).await.ok()?;
            // Totals and points are two ClickHouse queries run at once: an insert landing
            // between them makes them differ for a moment, so wait for both.
            let in_points: u64 = body["points"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|point| point["attempts"].as_u64().unwrap_or(0))
                .sum();
            (status == 200 && body["totals"]["attempts"] == attempts && in_points == attempts)
                .then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn slis_agree_with_the_attempt_history() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("sli").await?;
    let stranger = api.create_tenant("sli-other").await?;
    let healthy = Receiver::start().await;
    let refusing = Receiver::start().await;
    refusing.script([Reply::status(400), Reply::status(400)]);
    let good = api
        .create_endpoint(&tenant, json!({ "url": healthy.url }))
        .await?;
    let picky = api
        .create_endpoint(&tenant, json!({ "url": refusing.url }))
        .await?;
    let mut events = Vec::new();
    for n in 0..5 {
        events.push(
            api.send_event(
                &tenant,
                json!({ "type": "order.created", "payload": { "n": n } }),
            )
            .await?,
        );
    }
    events.push(
        api.send_event(&tenant, json!({ "type": "order.paid", "payload": {} }))
            .await?,
    );
    // Which two deliveries the receiver refuses depends on arrival order; two events fail.
    let mut failed = 0;
    for event_id in &events {
        let event = wait_until(Duration::from_secs(20), "the event concluded", || async {
            let (_, event) = api
                .get(&tenant, &format!("/v1/events/{event_id}"))
                .await
                .ok()?;
            matches!(event["status"].as_str(), Some("delivered" | "failed")).then_some(event)
        })
        .await?;
        failed += usize::from(event["status"] == "failed");
    }
    assert_eq!(failed, 2);

    let series = sli_when(&api, &tenant, "window=1h", 12).await?;
    let totals = &series["totals"];
    assert_eq!(totals["successes"], 10, "{totals}");
    assert_eq!(totals["deliveries_concluded"], 12, "{totals}");
    assert_eq!(totals["dead_letters"], 0);
    assert_eq!(totals["errors"], json!({ "http_4xx": 2 }), "{totals}");
    let rate = totals["success_rate"].as_f64().expect("a success rate");
    assert!((rate - 10.0 / 12.0).abs() < 1e-9, "{rate}");
    assert!(totals["end_to_end_latency_ms"]["p95"].as_f64().is_some());
    assert!(totals["attempt_latency_ms"]["p50"].as_f64().is_some());
    assert_eq!(series["granularity"], "minute");
    let points = series["points"].as_array().expect("points");
    let summed: u64 = points
        .iter()
        .map(|point| point["attempts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(summed, 12, "the points add up to the totals");

    // Per endpoint, the SLIs count exactly the attempts the history lists.
    for (endpoint, successes) in [(&good, 6), (&picky, 4)] {
        let history = attempts_in_history(&api, &tenant, &endpoint.endpoint_id).await?;
        let filtered = sli_when(
            &api,
            &tenant,
            &format!("window=1h&endpoint_id={}", endpoint.endpoint_id),
            history.len() as u64,
        )
        .await?;
        let succeeded = history
            .iter()
            .filter(|attempt| attempt["outcome"] == "succeeded")
            .count();
        assert_eq!(succeeded, successes);
        assert_eq!(filtered["totals"]["successes"], successes as u64);
    }
    let paid = sli_when(&api, &tenant, "window=24h&event_type=order.paid", 2).await?;
    assert_eq!(paid["granularity"], "hour");
    assert_eq!(paid["totals"]["successes"], 2);

    let (status, breakdown) = api
        .get(&tenant, "/v1/sli/breakdown?window=1h&by=endpoint")
        .await?;
    assert_eq!(status, 200, "{breakdown}");
    let rows = breakdown["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{breakdown}");
    assert_eq!(rows[0]["key"], good.endpoint_id.as_str(), "busiest first");
    assert_eq!(rows[1]["errors"]["http_4xx"], 2);
    let (_, by_type) = api
        .get(&tenant, "/v1/sli/breakdown?window=1h&by=event_type")
        .await?;
    assert_eq!(by_type["data"][0]["key"], "order.created");
    assert_eq!(by_type["data"][0]["attempts"], 10);

    // Another tenant sees nothing of it.
    let (_, theirs) = api.get(&stranger, "/v1/sli?window=1h").await?;
    assert_eq!(theirs["totals"]["attempts"], 0, "{theirs}");
    assert_eq!(theirs["totals"]["success_rate"], Value::Null);
    assert_eq!(theirs["points"], json!([]));

    for (query, field) in [
        ("window=2h", "window"),
        ("granularity=second", "granularity"),
        ("endpoint_id=nope", "endpoint_id"),
        ("event_type=order%20paid", "event_type"),
    ] {
        let (status, problem) = api.get(&tenant, &format!("/v1/sli?{query}")).await?;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    // Minutes over a week would be 10 080 points: served by the hour, and said so.
    let (status, weekly) = api
        .get(&tenant, "/v1/sli?window=7d&granularity=minute")
        .await?;
    assert_eq!((status, &weekly["granularity"]), (200, &json!("hour")));
    let (status, problem) = api.get(&tenant, "/v1/sli/breakdown?by=colour").await?;
    assert_eq!((status, problem["field"].clone()), (422, json!("by")));

    // The endpoint's health, from the same attempts: two refusals and four successes (the
    // streak's length depends on the order the concurrent attempts finished in).
    let (_, endpoint) = api
        .get(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", picky.endpoint_id),
        )
        .await?;
    let health = &endpoint["health"];
    assert_eq!(health["breaker_state"], "closed", "{endpoint}");
    assert_eq!(health["last_failure_class"], "http_4xx", "{endpoint}");
    let streaks = (
        health["success_streak"].as_u64().unwrap_or(99),
        health["failure_streak"].as_u64().unwrap_or(99),
    );
    assert!(
        matches!(streaks, (1..=4, 0) | (0, 1..=2)),
        "{streaks:?}: {endpoint}"
    );
    assert!(health["last_success_at"].is_string());

    // Operators see the tenant among all tenants; tenants cannot call it.
    let admin = api.herald.admin_token.clone();
    let (status, tenants) = get_with(&api, &admin, "/admin/v1/tenants/sli?window=1h").await?;
    assert_eq!(status, 200, "{tenants}");
    let ours = tenants["data"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["tenant_id"] == tenant.tenant_id.as_str())
        })
        .cloned()
        .expect("the tenant is listed");
    assert_eq!(ours["attempts"], 12);
    let error_rate = ours["error_rate"].as_f64().expect("an error rate");
    assert!((error_rate - 2.0 / 12.0).abs() < 1e-9, "{error_rate}");
    let (status, _) = api.get(&tenant, "/admin/v1/tenants/sli").await?;
    assert_eq!(status, 401);
    let (status, breakers) = get_with(&api, &admin, "/admin/v1/breakers").await?;
    assert_eq!(status, 200, "{breakers}");
    Ok(())
}

fn explanation_for<'a>(explained: &'a Value, endpoint_id: &str) -> &'a Value {
    explained["endpoints"]
        .as_array()
        .and_then(|endpoints| {
            endpoints
                .iter()
                .find(|endpoint| endpoint["endpoint_id"] == endpoint_id)
        })
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn explain_says_where_an_event_went_and_what_its_deliveries_wait_for() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("explain").await?;
    let receiver = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.script([Reply::status(500)]);
    let everything = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let invoices_only = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "events": ["invoice.paid"] }),
        )
        .await?;
    let slow_retry = api
        .create_endpoint(
            &tenant,
            json!({ "url": failing.url, "retry_policy": { "initial_delay_ms": 60000 } }),
        )
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "order.created", "payload": {} }))
        .await?;
    let scheduled_id = api
        .send_event(
            &tenant,
            json!({
                "type": "order.created", "payload": {},
                "target_endpoints": [everything.endpoint_id],
                "deliver_after": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            }),
        )
        .await?;
    let later = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let path = format!("/v1/events/{event_id}/explain");
    let explained = wait_until(
        Duration::from_secs(20),
        "the failed attempt is projected",
        || async {
            let (status, body) = api.get(&tenant, &path).await.ok()?;
            let retrying =
                explanation_for(&body, &slow_retry.endpoint_id)["waiting_for"]["kind"] == "retry";
            let delivered =
                explanation_for(&body, &everything.endpoint_id)["waiting_for"]["kind"] == "nothing";
            (status == 200 && retrying && delivered).then_some(body)
        },
    )
    .await?;
    assert_eq!(explained["endpoints"].as_array().map(Vec::len), Some(4));
    let delivered = explanation_for(&explained, &everything.endpoint_id);
    assert_eq!(delivered["routed"], true);
    assert_eq!(delivered["delivery_status"], "succeeded");
    let filtered = explanation_for(&explained, &invoices_only.endpoint_id);
    assert_eq!(filtered["routed"], false);
    assert_eq!(filtered["reason"], "type_filter", "{filtered}");
    assert_eq!(filtered["waiting_for"], Value::Null);
    let retrying = explanation_for(&explained, &slow_retry.endpoint_id);
    assert_eq!(retrying["delivery_status"], "retrying");
    assert!(
        retrying["waiting_for"]["until"].is_string(),
        "the retry's time: {retrying}"
    );
    assert!(
        retrying["waiting_for"]["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("HTTP 500")),
        "{retrying}"
    );
    let created_later = explanation_for(&explained, &later.endpoint_id);
    assert_eq!(created_later["reason"], "created_later", "{created_later}");

    let scheduled = wait_until(
        Duration::from_secs(20),
        "the scheduled event is projected",
        || async {
            let (status, body) = api
                .get(&tenant, &format!("/v1/events/{scheduled_id}/explain"))
                .await
                .ok()?;
            (status == 200).then_some(body)
        },
    )
    .await?;
    let waiting = explanation_for(&scheduled, &everything.endpoint_id);
    assert_eq!(waiting["waiting_for"]["kind"], "scheduled", "{waiting}");
    let left_out = explanation_for(&scheduled, &slow_retry.endpoint_id);
    assert_eq!(left_out["reason"], "not_targeted", "{left_out}");

    let stranger = api.create_tenant("explain-other").await?;
    let (status, _) = api.get(&stranger, &path).await?;
    assert_eq!(status, 404, "another tenant's event is not found");
    let (status, problem) = api.get(&tenant, "/v1/events/nope/explain").await?;
    assert_eq!((status, problem["field"].clone()), (422, json!("event_id")));
    Ok(())
}

#[tokio::test]
async fn portal_sessions_read_and_replay_as_allowed_and_nothing_more() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("portal").await?;
    let stranger = api.create_tenant("portal-other").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    api.create_endpoint(&stranger, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "order.created", "payload": {} }))
        .await?;
    let their_event = api
        .send_event(&stranger, json!({ "type": "order.created", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    api.wait_for_event_status(&stranger, &their_event, "delivered")
        .await?;

    let (status, session) = post_with(
        &api,
        &tenant.api_key,
        "/v1/portal_sessions",
        json!({ "read_only": true, "frame_ancestors": ["https://App.example.com"] }),
    )
    .await?;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("hps_"));
    let url = session["url"].as_str().expect("url");
    assert_eq!(url, format!("{}/portal/{token}", api.herald.base_url));
    assert_eq!(
        session["frame_ancestors"],
        json!(["https://app.example.com"])
    );

    let (status, me) = get_with(&api, &token, "/v1/session").await?;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["credential"], "portal_session");
    assert_eq!(me["read_only"], true);
    assert_eq!(me["tenant_id"], tenant.tenant_id.as_str());
    let (status, _) = get_with(&api, &token, &format!("/v1/events/{event_id}")).await?;
    assert_eq!(status, 200, "a portal session reads the tenant's events");
    let (status, _) = get_with(&api, &token, &format!("/v1/events/{their_event}")).await?;
    assert_eq!(status, 404, "and only the tenant's");
    let replay = format!("/v1/events/{event_id}/replay");
    let (status, problem) = post_with(&api, &token, &replay, json!({})).await?;
    assert_eq!(status, 403, "read-only: {problem}");
    let (status, _) = post_with(
        &api,
        &token,
        "/v1/events",
        json!({ "type": "order.created", "payload": {} }),
    )
    .await?;
    assert_eq!(status, 403, "a portal session sends no events");
    let (status, _) = post_with(&api, &token, "/v1/portal_sessions", json!({})).await?;
    assert_eq!(status, 403, "nor makes portal sessions");

    // The link opens the dashboard, frameable only by the named origin.
    let page = api.http.get(url).send().await?;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(
        policy.contains("frame-ancestors https://app.example.com"),
        "{policy}"
    );
    assert!(page.text().await?.contains("/dashboard/app.js"));
    let plain = api.http.get(api.url("/dashboard")).send().await?;
    let policy = plain.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");

    // A session that may replay does; an API key's own session reads as one.
    let (status, writable) =
        post_with(&api, &tenant.api_key, "/v1/portal_sessions", Value::Null).await?;
    assert_eq!(status, 201, "a null body is a default session: {writable}");
    assert_eq!(writable["read_only"], false);
    let writable = writable["token"].as_str().expect("token").to_owned();
    let (status, accepted) = post_with(&api, &writable, &replay, json!({})).await?;
    assert_eq!(status, 202, "{accepted}");
    let (_, me) = get_with(&api, &tenant.api_key, "/v1/session").await?;
    assert_eq!(me["credential"], "api_key");

    for (body, field) in [
        (json!({ "expires_in": 59 }), "expires_in"),
        (json!({ "expires_in": 86401 }), "expires_in"),
        (
            json!({ "frame_ancestors": ["https://a.example.com; script-src *"] }),
            "frame_ancestors[0]",
        ),
        (json!({ "frame_ancestors": ["*"] }), "frame_ancestors[0]"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let (status, problem) =
            post_with(&api, &tenant.api_key, "/v1/portal_sessions", body.clone()).await?;
        assert_eq!(status, 422, "{body}: {problem}");
        assert!(
            problem["field"].as_str().is_some_and(|named| named == field
                || problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(field))),
            "{body}: {problem}"
        );
    }
    let (status, _) = get_with(&api, "hps_not-a-session", "/v1/session").await?;
    assert_eq!(status, 401);
    Ok(())
}
