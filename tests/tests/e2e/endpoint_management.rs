//! Changing and deleting endpoints (`PATCH`/`DELETE /v1/webhook_endpoints/{id}`), custom
//! headers, ed25519 (`v1a`) signing and `HERALD_REQUIRE_HTTPS`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{start_with, wait_until, Api};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_changed_endpoint_delivers_the_next_event_as_changed() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("patch").await?;
    let before = Receiver::start().await;
    let after = Receiver::start().await;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": before.url, "headers": {"X-Receiver-Token": "first-token-value"} }),
        )
        .await?;
    assert_eq!(endpoint.body["header_names"], json!(["X-Receiver-Token"]));
    assert!(!endpoint.body.to_string().contains("first-token-value"));
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);

    let (status, changed) = api
        .patch(
            &tenant,
            &path,
            json!({
                "url": after.url,
                "events": ["invoice.paid"],
                "description": "moved",
                "headers": {"X-Receiver-Token": null, "Authorization": "Bearer patched-token"},
                "rate_limit": {"per_second": 100}
            }),
        )
        .await?;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["url"], json!(after.url));
    assert_eq!(changed["header_names"], json!(["Authorization"]));
    assert_eq!(
        changed["changed"],
        json!(["url", "events", "description", "rate_limit", "headers"])
    );
    assert!(!changed.to_string().contains("patched-token"));
    let (_, shown) = api.get(&tenant, &path).await?;
    assert_eq!(shown["header_names"], json!(["Authorization"]));
    assert_eq!(shown["events"], json!(["invoice.paid"]));
    assert!(!shown.to_string().contains("patched-token"));

    // Filtered out now: not delivered anywhere.
    api.send_event(&tenant, json!({"type": "user.created", "payload": {}}))
        .await?;
    let event_id = api
        .send_event(
            &tenant,
            json!({"type": "invoice.paid", "payload": {"n": 1}}),
        )
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let received = after.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("webhook-id"), event_id);
    assert_eq!(received[0].header("authorization"), "Bearer patched-token");
    assert_eq!(received[0].header("x-receiver-token"), "");
    assert!(before.requests().is_empty());

    // `null` clears what may be absent.
    let (status, cleared) = api
        .patch(
            &tenant,
            &path,
            json!({"events": null, "description": null, "headers": null, "rate_limit": null}),
        )
        .await?;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["events"], Value::Null);
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(cleared["header_names"], json!([]));
    Ok(())
}

#[tokio::test]
async fn re_enabling_an_endpoint_herald_disabled_clears_the_reason() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("re-enable").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(410)]);
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
    api.send_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    wait_until(
        Duration::from_secs(20),
        "endpoint disabled by 410",
        || async {
            let (_, shown) = api.get(&tenant, &path).await.ok()?;
            (shown["enabled"] == false && shown["disabled_reason"].is_string()).then_some(())
        },
    )
    .await?;
    let (status, enabled) = api.patch(&tenant, &path, json!({"enabled": true})).await?;
    assert_eq!(status, 200, "{enabled}");
    let (_, shown) = api.get(&tenant, &path).await?;
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["disabled_reason"], Value::Null);
    let event_id = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    Ok(())
}

#[tokio::test]
async fn deleting_an_endpoint_ends_its_pending_deliveries() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("delete").await?;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503)]);
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "retry_policy": {"initial_delay_ms": 1500} }),
        )
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
    let event_id = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    wait_until(Duration::from_secs(20), "the first attempt", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await?;
    let (status, _) = api.delete(&tenant, &path).await?;
    assert_eq!(status, 204);
    let (status, problem) = api.get(&tenant, &path).await?;
    assert_eq!(status, 404, "{problem}");
    let (status, _) = api.delete(&tenant, &path).await?;
    assert_eq!(status, 404, "deleting twice finds nothing");

    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await?;
    assert_eq!(
        event["deliveries"][0]["last_error_code"], "endpoint_unavailable",
        "{event}"
    );
    let (_, attempts) = api
        .get(&tenant, &format!("/v1/deliveries?event_id={event_id}"))
        .await?;
    let last = &attempts["data"][0];
    assert_eq!(last["outcome"], "failed", "{attempts}");
    assert_eq!(
        last["error_message"], "the endpoint was deleted",
        "{attempts}"
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing sent after the delete"
    );
    // Events sent afterwards are routed nowhere.
    let later = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    let later = wait_until(Duration::from_secs(20), "the later event", || async {
        let (status, body) = api
            .get(&tenant, &format!("/v1/events/{later}"))
            .await
            .ok()?;
        (status == 200).then_some(body)
    })
    .await?;
    assert_eq!(later["deliveries"], json!([]), "{later}");
    Ok(())
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("bad-patch").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "headers": {"X-A": "kept"} }),
        )
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
    let (_, before) = api.get(&tenant, &path).await?;
    let too_many: serde_json::Map<String, Value> = (0..21)
        .map(|index| (format!("X-H{index}"), json!("v")))
        .collect();
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": null}), "url"),
        (json!({"events": []}), "events"),
        (json!({"events": ["bad type!"]}), "events[0]"),
        (
            json!({"headers": {"Webhook-Signature": "forged"}}),
            "headers.Webhook-Signature",
        ),
        (json!({"headers": {"X-B": "two\r\nlines"}}), "headers.X-B"),
        (json!({"headers": {"bad name": "v"}}), "headers.bad name"),
        (json!({"headers": too_many}), "headers"),
        (
            json!({"rate_limit": {"per_second": 0}}),
            "rate_limit.per_second",
        ),
        (
            json!({"retry_policy": {"max_attempts": 99}}),
            "retry_policy.max_attempts",
        ),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"enabled": null}), "enabled"),
        (json!({"secret": "whsec_x"}), ""),
    ] {
        let (status, content_type, problem) = api
            .call(
                reqwest::Method::PATCH,
                &path,
                &tenant.api_key,
                Some(body.clone()),
            )
            .await?;
        assert_eq!(status, 422, "{body} → {problem}");
        assert_eq!(content_type, "application/problem+json");
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{body} → {problem}");
        }
    }
    let response = api
        .http
        .patch(api.url(&path))
        .bearer_auth(&tenant.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    let (status, _) = api
        .patch(&tenant, "/v1/webhook_endpoints/not-a-uuid", json!({}))
        .await?;
    assert_eq!(status, 422);
    let (status, _) = api
        .patch(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", uuid::Uuid::now_v7()),
            json!({"enabled": false}),
        )
        .await?;
    assert_eq!(status, 404);
    // Another tenant's endpoint is not found either.
    let other = api.create_tenant("bad-patch-other").await?;
    let (status, _) = api.patch(&other, &path, json!({"enabled": false})).await?;
    assert_eq!(status, 404);
    let (status, _) = api.delete(&other, &path).await?;
    assert_eq!(status, 404);

    let (_, after) = api.get(&tenant, &path).await?;
    assert_eq!(after, before, "nothing changed");
    Ok(())
}

/// Verifies a `v1a,<base64>` signature of Standard Webhooks' signed content with a `whpk_` key.
fn verifies_v1a(public_key: &str, signature: &str, id: &str, timestamp: &str, body: &[u8]) -> bool {
    let Some(key) = public_key
        .strip_prefix("whpk_")
        .and_then(|key| STANDARD.decode(key).ok())
    else {
        return false;
    };
    let Some(signature) = signature
        .strip_prefix("v1a,")
        .and_then(|signature| STANDARD.decode(signature).ok())
    else {
        return false;
    };
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(&message, &signature)
        .is_ok()
}

#[tokio::test]
async fn ed25519_endpoints_sign_with_a_key_only_herald_holds() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("v1a").await?;
    let receiver = Receiver::start().await;
    let (status, created) = api
        .post(
            &tenant,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "signature_scheme": "v1a"}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signature_scheme"], "v1a");
    assert_eq!(created["secret"], Value::Null);
    let public_key = created["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(public_key.starts_with("whpk_"), "{created}");
    let path = format!(
        "/v1/webhook_endpoints/{}",
        created["endpoint_id"].as_str().unwrap_or_default()
    );
    let (_, shown) = api.get(&tenant, &path).await?;
    assert_eq!(shown["public_key"], json!(public_key));

    let event_id = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {"x": 1}}))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let request = receiver.requests().remove(0);
    let (id, timestamp) = (
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
    );
    let signature = request.header("webhook-signature");
    assert!(
        verifies_v1a(&public_key, signature, id, timestamp, &request.body),
        "{signature}"
    );
    assert!(!verifies_v1a(
        &public_key,
        signature,
        id,
        "1",
        &request.body
    ));

    // A v1a endpoint takes no secret; rotating gives it a new key pair, and during the grace
    // period deliveries carry a signature by each.
    let (status, problem) = api
        .post(
            &tenant,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "signature_scheme": "v1a", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        )
        .await?;
    assert_eq!((status, problem["field"].clone()), (422, json!("secret")));
    let (status, rotated) = api
        .post(&tenant, &format!("{path}/secret/rotate"), json!({}))
        .await?;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret"], Value::Null);
    let new_key = rotated["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(new_key.starts_with("whpk_") && new_key != public_key);
    let event_id = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {"x": 2}}))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let request = receiver
        .requests()
        .into_iter()
        .find(|request| request.header("webhook-id") == event_id)
        .expect("delivered");
    let signatures: Vec<&str> = request.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let by = |key: &str| {
        signatures.iter().any(|signature| {
            verifies_v1a(
                key,
                signature,
                &event_id,
                request.header("webhook-timestamp"),
                &request.body,
            )
        })
    };
    assert!(by(&new_key) && by(&public_key));
    let (status, problem) = api
        .post(
            &tenant,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "signature_scheme": "v2"}),
        )
        .await?;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("signature_scheme"))
    );
    Ok(())
}

#[tokio::test]
async fn require_https_refuses_plain_http_endpoints() -> anyhow::Result<()> {
    let strict = start_with(|config| config.command.require_https = true)?;
    let api = Api::with(strict);
    let tenant = api.create_tenant("https-only").await?;
    let (status, problem) = api
        .post(
            &tenant,
            "/v1/webhook_endpoints",
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await?;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "url");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("https"),
        "{problem}"
    );
    let endpoint = api
        .create_endpoint(&tenant, json!({"url": "https://127.0.0.1:9/hook"}))
        .await?;
    let (status, problem) = api
        .patch(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id),
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await?;
    assert_eq!((status, problem["field"].clone()), (422, json!("url")));
    Ok(())
}
