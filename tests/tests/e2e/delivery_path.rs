//! One webhook travels the whole path: ingest → log → delivery → attempt event → Postgres and
//! ClickHouse → query API.

use herald_tests::receiver::Receiver;
use herald_tests::{signature, wait_until, Api};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn healthz_reports_every_store_and_service() -> anyhow::Result<()> {
    let api = Api::new();
    let response = api.http.get(api.url("/healthz")).send().await?;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["status"], "ok");
    for store in ["nats", "postgres", "clickhouse"] {
        assert_eq!(body[store]["ok"], true, "{store}: {body}");
    }
    // The test Herald runs every service: each has opened what it reads from the log.
    for service in ["delivery", "projector"] {
        assert_eq!(body[service], "running", "{service}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn an_event_is_delivered_signed_and_recorded_everywhere() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("path").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "description": "primary" }),
        )
        .await?;
    assert!(endpoint.secret.starts_with("whsec_"));
    assert_eq!(endpoint.body["enabled"], true);
    assert_eq!(endpoint.body["url"], receiver.url);

    let payload = json!({ "invoice": "in_1", "amount": 1200, "lines": [1, 2, 3] });
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "invoice.paid", "payload": payload }),
        )
        .await?;

    wait_until(
        Duration::from_secs(10),
        "the receiver to get the webhook",
        || async { (receiver.count() == 1).then_some(()) },
    )
    .await?;
    let request = &receiver.requests()[0];
    assert_eq!(request.header("webhook-id"), event_id);
    assert_eq!(request.header("content-type"), "application/json");
    let timestamp: i64 = request.header("webhook-timestamp").parse()?;
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert!(signature::verify(
        &endpoint.secret,
        &event_id,
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature"),
    ));
    assert!(request.header("traceparent").starts_with("00-"));
    let body = request.json();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"], payload);
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap_or("")).is_ok());

    let event = api
        .wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    assert_eq!(event["type"], "invoice.paid");
    assert_eq!(event["payload"], payload);
    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["endpoint_id"], endpoint.endpoint_id.as_str());
    assert_eq!(deliveries[0]["status"], "succeeded");
    assert_eq!(deliveries[0]["attempt_count"], 1);
    assert_eq!(deliveries[0]["last_http_status"], 200);

    let (status, page) = api
        .get(&tenant, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    assert_eq!(status, 200);
    let attempts = page["data"].as_array().expect("data");
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt["event_id"], event_id.as_str());
    assert_eq!(attempt["endpoint_id"], endpoint.endpoint_id.as_str());
    assert_eq!(attempt["attempt_number"], 1);
    assert_eq!(attempt["http_status"], 200);
    assert_eq!(attempt["outcome"], "succeeded");
    assert!(attempt["error_code"].is_null());
    for field in [
        "attempt_id",
        "scheduled_at",
        "started_at",
        "finished_at",
        "latency_ms",
        "trace_id",
    ] {
        assert!(!attempt[field].is_null(), "{field} missing: {attempt}");
    }
    assert_eq!(attempt["trace_id"], event["trace_id"]);
    // The receiver answered with an empty body: its SHA-256 is recorded, never the body.
    assert_eq!(
        attempt["response_body_hash"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(request
        .header("traceparent")
        .contains(event["trace_id"].as_str().unwrap_or("?")));
    assert!(page["next_cursor"].is_null());

    let rows = wait_until(Duration::from_secs(15), "the ClickHouse attempt row", || async {
        let rows = api
            .clickhouse(&format!(
                "SELECT outcome, http_status, attempt_number, endpoint_id FROM attempts WHERE event_id = '{event_id}' FORMAT TabSeparated"
            ))
            .await
            .ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await?;
    assert_eq!(rows, format!("succeeded\t200\t1\t{}", endpoint.endpoint_id));
    Ok(())
}

#[tokio::test]
async fn a_secret_given_at_creation_signs_the_deliveries() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("own-secret").await?;
    let receiver = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url, "secret": secret }))
        .await?;
    assert_eq!(endpoint.secret, secret);
    let event_id = api
        .send_event(&tenant, json!({ "type": "a", "payload": {"k": "v"} }))
        .await?;
    wait_until(Duration::from_secs(10), "delivery", || async {
        (receiver.count() == 1).then_some(())
    })
    .await?;
    let request = &receiver.requests()[0];
    assert!(signature::verify(
        secret,
        &event_id,
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature")
    ));
    assert!(!signature::verify(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &event_id,
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature")
    ));
    Ok(())
}

#[tokio::test]
async fn openapi_describes_every_route() -> anyhow::Result<()> {
    let api = Api::new();
    let document: serde_json::Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let paths = &document["paths"];
    for (path, method) in [
        ("/admin/v1/tenants", "post"),
        ("/v1/webhook_endpoints", "post"),
        ("/v1/webhook_endpoints", "get"),
        ("/v1/webhook_endpoints/{endpoint_id}", "get"),
        ("/v1/events", "post"),
        ("/v1/events/{event_id}", "get"),
        ("/v1/events/{event_id}/replay", "post"),
        ("/v1/webhook_endpoints/{endpoint_id}/secret/rotate", "post"),
        ("/v1/deliveries", "get"),
        ("/v1/deliveries/replay", "post"),
        ("/healthz", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    for schema in [
        "CreateEvent",
        "EventView",
        "AttemptView",
        "AttemptPage",
        "ProblemDetails",
        "CreateEndpoint",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    Ok(())
}

#[tokio::test]
async fn during_a_rotation_deliveries_carry_both_signatures() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("rotation").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let response = api
        .http
        .post(api.url(&format!(
            "/v1/webhook_endpoints/{}/secret/rotate",
            endpoint.endpoint_id
        )))
        .bearer_auth(&tenant.api_key)
        .json(&json!({ "grace_period_seconds": 3600 }))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let rotated: serde_json::Value = response.json().await?;
    let new_secret = rotated["secret"].as_str().unwrap_or("").to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != endpoint.secret);

    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    wait_until(Duration::from_secs(10), "delivery", || async {
        (receiver.count() == 1).then_some(())
    })
    .await?;
    let request = &receiver.requests()[0];
    let signatures = request.header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [&endpoint.secret, &new_secret] {
        assert!(signature::verify(
            secret,
            &event_id,
            request.header("webhook-timestamp"),
            &request.body,
            signatures
        ));
    }

    // Another tenant cannot rotate this endpoint.
    let stranger = api.create_tenant("rotation-stranger").await?;
    let response = api
        .http
        .post(api.url(&format!(
            "/v1/webhook_endpoints/{}/secret/rotate",
            endpoint.endpoint_id
        )))
        .bearer_auth(&stranger.api_key)
        .send()
        .await?;
    assert_eq!(response.status(), 404);
    Ok(())
}

#[tokio::test]
async fn a_receiver_answering_410_gone_disables_its_endpoint() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("gone").await?;
    let receiver = Receiver::start().await;
    receiver.script([herald_tests::receiver::Reply::status(410)]);
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let first = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api.wait_for_event_status(&tenant, &first, "failed").await?;
    assert_eq!(event["deliveries"][0]["last_http_status"], 410);
    let (_, view) = api
        .get(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
        )
        .await?;
    assert_eq!(view["enabled"], false);
    assert!(
        view["disabled_reason"]
            .as_str()
            .unwrap_or("")
            .contains("410"),
        "{view}"
    );

    // Later events no longer go to it.
    let later = wait_until(
        Duration::from_secs(10),
        "routing to forget the endpoint",
        || async {
            let event_id = api
                .send_event(&tenant, json!({ "type": "t", "payload": {} }))
                .await
                .ok()?;
            let event = api
                .wait_for_event_status(&tenant, &event_id, "delivered")
                .await
                .ok()?;
            (event["deliveries"] == json!([])).then_some(event_id)
        },
    )
    .await?;
    assert!(!later.is_empty());
    assert!(receiver
        .requests()
        .iter()
        .all(|request| request.header("webhook-id") != later));
    Ok(())
}
