//! The log contract of `docs/subscribers.md`, checked against a real Herald: while a scenario
//! makes every kind of message happen (a tenant; endpoints whose receivers succeed, fail until
//! the circuit breaker opens and closes, and answer 410 Gone; a secret rotation; a replay),
//! a subscriber follows the log stream with the example subscriber's durable consumer and the
//! retry subjects with a plain NATS subscription (the retry stream is a work queue: a consumer
//! would take retries away from Herald). Every message seen must validate against
//! `schemas/json/log-message.schema.json`, decode with `LogMessage::decode`, encode back to the
//! same JSON, and travel on the subject the document names for its type.

use herald_example_subscriber::{follow, Seen, Start, Subscription};
use herald_schemas::{LogMessage, Namespace};
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{start_with, wait_until, Api};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The JSON Schema outside subscribers are given.
fn log_message_validator() -> jsonschema::Validator {
    let path = repository_file("schemas/json/log-message.schema.json");
    let text = std::fs::read_to_string(&path).expect("the committed JSON Schema");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

/// The subject family (`<ns>.<family>.…`) each message type travels on, as
/// `docs/subscribers.md` documents it.
fn family_of(type_name: &str) -> &'static str {
    match type_name {
        "event.accepted.v1" => "events",
        "attempt.recorded.v1" | "attempt.recorded.v2" | "delivery.deferred.v1" => "attempts",
        "tenant.created.v1"
        | "tenant.created.v2"
        | "tenant.updated.v1"
        | "api_key.created.v1"
        | "api_key.revoked.v1"
        | "endpoint.created.v1"
        | "endpoint.created.v2"
        | "endpoint.created.v3"
        | "endpoint.updated.v2"
        | "endpoint.slo_burning.v1"
        | "endpoint.updated.v1"
        | "endpoint.deleted.v1"
        | "endpoint.secret_rotated.v1"
        | "endpoint.secret_rotated.v2"
        | "endpoint.disabled.v1"
        | "endpoint.disabled.v2"
        | "endpoint.circuit_opened.v1"
        | "endpoint.circuit_closed.v1" => "config",
        "delivery.replay_requested.v1"
        | "replay.started.v1"
        | "replay.progressed.v1"
        | "replay.finished.v1" => "replays",
        "retry.due.v1" => "retries",
        _ => "undocumented",
    }
}

/// Checks one message against the contract; returns its type name, or what is wrong.
fn check(
    validator: &jsonschema::Validator,
    namespace: &Namespace,
    subject: &str,
    payload: &[u8],
) -> Result<String, String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|error| format!("not JSON: {error}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    if !errors.is_empty() {
        return Err(format!("fails the JSON Schema: {}", errors.join("; ")));
    }
    let type_name = value["type"].as_str().unwrap_or_default().to_owned();
    let message =
        LogMessage::decode(payload).map_err(|error| format!("does not decode: {error}"))?;
    if message.type_name() != type_name {
        return Err(format!("decodes as {}", message.type_name()));
    }
    let encoded: Value = serde_json::from_slice(&message.encode()).map_err(|e| e.to_string())?;
    if encoded != value {
        return Err(format!("encodes differently: {encoded}"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let family = family_of(&type_name);
    if tokens.len() != 3 || tokens[0] != namespace.as_str() || tokens[1] != family {
        return Err(format!(
            "on subject {subject}, documented on {namespace}.{family}.*"
        ));
    }
    if family != "retries" {
        let tenant_id = value["data"]["tenant_id"]
            .as_str()
            .or_else(|| value["data"]["endpoint"]["tenant_id"].as_str());
        if tenant_id != Some(tokens[2]) {
            return Err(format!(
                "on subject {subject} but its tenant is {tenant_id:?}"
            ));
        }
    }
    Ok(type_name)
}

/// What the subscribers have seen so far.
#[derive(Default)]
struct Observed {
    types: BTreeMap<String, usize>,
    failures: Vec<String>,
    /// The first attempt record seen: its stream sequence and when the stream received it.
    first_attempt: Option<(u64, async_nats::datetime::DateTime)>,
    /// The last log stream sequence the subscriber handled.
    last_sequence: u64,
}

impl Observed {
    fn record(&mut self, subject: &str, checked: Result<String, String>, payload: &[u8]) {
        match checked {
            Ok(type_name) => *self.types.entry(type_name).or_default() += 1,
            Err(problem) => self.failures.push(format!(
                "{subject}: {problem}: {}",
                String::from_utf8_lossy(payload)
            )),
        }
    }

    fn has(&self, type_name: &str) -> bool {
        self.types.contains_key(type_name)
    }
}

async fn post(api: &Api, api_key: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let response = api
        .http
        .post(api.url(path))
        .bearer_auth(api_key)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
    Ok(body)
}

#[tokio::test]
async fn every_message_in_a_real_run_follows_the_published_contract() -> anyhow::Result<()> {
    let api = Api::with(start_with(|config| {
        // Long enough that the failing endpoint's last retry comes while its breaker is open
        // (retries wait at most 2 s in the test configuration): that delivery is deferred.
        config.delivery.breaker_open_ms = 3_000;
    })?);
    let namespace = api.namespace()?;
    let validator = Arc::new(log_message_validator());
    let observed = Arc::new(Mutex::new(Observed::default()));
    let stop = CancellationToken::new();
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client.clone());

    // The log stream, everything in it, through the example subscriber.
    let subscription = Subscription::new(
        namespace.log_stream(),
        "contract_test".to_owned(),
        format!("{namespace}.>"),
        Start::All,
    );
    let consumer = subscription.open(&jetstream, true).await?;
    let log_follower = tokio::spawn({
        let (validator, observed, namespace) =
            (validator.clone(), observed.clone(), namespace.clone());
        let stop = stop.clone().cancelled_owned();
        async move {
            follow(&consumer, None, stop, |seen: &Seen| {
                let checked = check(&validator, &namespace, &seen.subject, &seen.payload);
                let mut observed = observed.lock().expect("lock");
                if seen.decoded.as_ref().map(LogMessage::type_name).ok()
                    == Some("attempt.recorded.v2")
                    && observed.first_attempt.is_none()
                {
                    observed.first_attempt = Some((seen.stream_sequence, seen.published));
                }
                observed.last_sequence = seen.stream_sequence;
                observed.record(&seen.subject, checked, &seen.payload);
            })
            .await
        }
    });
    // The retry subjects, live: a plain subscription sees what is appended without taking it.
    let mut retries = client.subscribe(namespace.retries_filter()).await?;
    client.flush().await?;
    let retry_follower = tokio::spawn({
        let (validator, observed, namespace) =
            (validator.clone(), observed.clone(), namespace.clone());
        let stop = stop.clone();
        async move {
            use futures::StreamExt;
            loop {
                let message = tokio::select! {
                    message = retries.next() => message,
                    () = stop.cancelled() => break,
                };
                let Some(message) = message else { break };
                let checked = check(&validator, &namespace, &message.subject, &message.payload);
                observed
                    .lock()
                    .expect("lock")
                    .record(&message.subject, checked, &message.payload);
            }
        }
    });

    // The scenario.
    let tenant = api.create_tenant("log-contract").await?;
    let scenario_started_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let healthy = Receiver::start().await;
    let failing = Receiver::start().await;
    // Three failures open the breaker (threshold 3 in tests); the probe after it succeeds.
    failing.script([500, 500, 500].map(Reply::status));
    let gone = Receiver::start().await;
    gone.script([Reply::status(410)]);
    let healthy_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": healthy.url, "events": ["order.paid"] }),
        )
        .await?;
    api.create_endpoint(
        &tenant,
        json!({ "url": failing.url, "events": ["order.flaky"] }),
    )
    .await?;
    api.create_endpoint(
        &tenant,
        json!({ "url": gone.url, "events": ["order.gone"] }),
    )
    .await?;
    let paid = api
        .send_event(
            &tenant,
            json!({ "type": "order.paid", "payload": { "order": 1 } }),
        )
        .await?;
    api.send_event(
        &tenant,
        json!({ "type": "order.flaky", "payload": { "order": 2 } }),
    )
    .await?;
    api.send_event(
        &tenant,
        json!({ "type": "order.gone", "payload": { "order": 3 } }),
    )
    .await?;
    // An objective burning fast: ten refusals against 99 % (evaluated every 300 ms here).
    let refusing = Receiver::start().await;
    refusing.script((0..10).map(|_| Reply::status(400)));
    api.create_endpoint(
        &tenant,
        json!({ "url": refusing.url, "events": ["order.refused"], "slo": { "success_rate": 0.99 } }),
    )
    .await?;
    for order in 0..10 {
        api.send_event(
            &tenant,
            json!({ "type": "order.refused", "payload": { "order": order } }),
        )
        .await?;
    }
    post(
        &api,
        &tenant.api_key,
        &format!(
            "/v1/webhook_endpoints/{}/secret/rotate",
            healthy_endpoint.endpoint_id
        ),
        json!({}),
    )
    .await?;
    api.wait_for_event_status(&tenant, &paid, "delivered")
        .await?;
    post(
        &api,
        &tenant.api_key,
        &format!("/v1/events/{paid}/replay"),
        json!({}),
    )
    .await?;
    // A replay from the log of the scenario's three events, one a second: long enough to
    // record its progress before it finishes.
    post(
        &api,
        &tenant.api_key,
        "/v1/replays",
        json!({ "since": scenario_started_at, "until": chrono::Utc::now(), "mode": "as_then",
                "events_per_second": 1 }),
    )
    .await?;

    // Configuration: a key made and revoked, an endpoint changed and another deleted, the
    // tenant changed by an operator.
    let key = post(
        &api,
        &tenant.api_key,
        "/v1/api_keys",
        json!({ "name": "contract" }),
    )
    .await?;
    let (status, _) = api
        .delete(
            &tenant,
            &format!(
                "/v1/api_keys/{}",
                key["key_id"].as_str().unwrap_or_default()
            ),
        )
        .await?;
    anyhow::ensure!(status == 204, "revoking: {status}");
    let spare = api
        .create_endpoint(
            &tenant,
            json!({ "url": healthy.url, "events": ["order.none"] }),
        )
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", spare.endpoint_id);
    let (status, _) = api
        .patch(
            &tenant,
            &path,
            json!({ "description": "changed", "headers": {"X-A": "b"} }),
        )
        .await?;
    anyhow::ensure!(status == 200, "patching: {status}");
    let (status, _) = api.delete(&tenant, &path).await?;
    anyhow::ensure!(status == 204, "deleting: {status}");
    let (status, _, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/v1/tenants/{}", tenant.tenant_id),
            &api.herald.admin_token,
            Some(json!({ "name": "log contract" })),
        )
        .await?;
    anyhow::ensure!(status == 200, "changing the tenant: {status}");

    // Done when every type has been seen, the receivers got what the scenario sends (the
    // replay included) and the subscriber has read the log stream to its end.
    let expected = LogMessage::TYPE_NAMES;
    let log_stream = jetstream.get_stream(namespace.log_stream()).await?;
    let settled = wait_until(
        Duration::from_secs(60),
        "every message type, and the subscriber at the end of the log",
        || async {
            let everything_seen = {
                let observed = observed.lock().expect("lock");
                if !observed.failures.is_empty() {
                    // Reported below, at once.
                    return Some(());
                }
                expected.iter().all(|type_name| observed.has(type_name))
            };
            let delivered = healthy.count() >= 2
                && failing
                    .requests()
                    .iter()
                    .any(|request| request.answered_status == 200)
                && gone.count() >= 1;
            if !(everything_seen && delivered) {
                return None;
            }
            let info = log_stream.consumer_info("contract_test").await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        },
    )
    .await;
    let report = {
        let observed = observed.lock().expect("lock");
        format!(
            "seen {:?}, failures {:#?}",
            observed.types, observed.failures
        )
    };
    settled.map_err(|error| anyhow::anyhow!("{error}; {report}"))?;

    stop.cancel();
    log_follower.await??;
    retry_follower.await?;
    {
        let observed = observed.lock().expect("lock");
        assert!(
            observed.failures.is_empty(),
            "messages break the contract: {:#?}",
            observed.failures
        );
        for type_name in expected {
            assert!(observed.has(type_name), "never saw {type_name}; {report}");
        }
        eprintln!("messages seen, by type: {:?}", observed.types);
    }

    // Resuming. Bound again, the durable consumer carries on after what it acknowledged (its
    // start, `all`, is no longer looked at); new consumers start at a sequence or a time.
    let (first_attempt, first_attempt_published, last_sequence) = {
        let observed = observed.lock().expect("lock");
        let (sequence, published) = observed.first_attempt.expect("an attempt record was seen");
        (sequence, published, observed.last_sequence)
    };
    api.send_event(
        &tenant,
        json!({ "type": "order.paid", "payload": { "order": 4 } }),
    )
    .await?;
    let first_from = |subscription: Subscription, restart| {
        let (jetstream, validator, namespace) =
            (jetstream.clone(), validator.clone(), namespace.clone());
        async move {
            let consumer = subscription.open(&jetstream, restart).await?;
            let mut first = None;
            let read = follow(&consumer, Some(1), std::future::pending(), |seen: &Seen| {
                let checked = check(&validator, &namespace, &seen.subject, &seen.payload);
                first = Some((seen.stream_sequence, checked));
            });
            tokio::time::timeout(Duration::from_secs(10), read).await??;
            let (sequence, checked) = first.expect("a message");
            checked.map_err(|problem| anyhow::anyhow!("{problem}"))?;
            anyhow::Ok(sequence)
        }
    };
    let resumed = first_from(subscription, false).await?;
    assert!(
        resumed > last_sequence,
        "resumed at {resumed}, handled up to {last_sequence}"
    );
    let attempts = |durable_name: &str, start| {
        Subscription::new(
            namespace.log_stream(),
            durable_name.to_owned(),
            namespace.attempts_filter(),
            start,
        )
    };
    let by_sequence = attempts("contract_from_sequence", Start::Sequence(first_attempt));
    assert_eq!(first_from(by_sequence, true).await?, first_attempt);
    let by_time = attempts("contract_from_time", Start::Time(first_attempt_published));
    assert_eq!(first_from(by_time, true).await?, first_attempt);
    Ok(())
}

#[test]
fn frozen_samples_validate_against_the_json_schema() {
    let validator = log_message_validator();
    let directory = repository_file("schemas/tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&directory).expect("schemas/tests/fixtures") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        let sample: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("readable")).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&sample)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert_eq!(
        checked,
        LogMessage::TYPE_NAMES.len() + LogMessage::OLDER_TYPE_NAMES.len()
    );

    // The validator does reject what breaks the contract.
    let sample: Value = serde_json::from_slice(
        &std::fs::read(directory.join("event.accepted.v1.json")).expect("readable"),
    )
    .expect("JSON");
    let mut missing_field = sample.clone();
    missing_field["data"]
        .as_object_mut()
        .expect("data")
        .remove("event_id");
    let mut unknown_type = sample.clone();
    unknown_type["type"] = json!("event.accepted.v0");
    let mut wrong_format = sample;
    wrong_format["data"]["accepted_at"] = json!("yesterday");
    for broken in [missing_field, unknown_type, wrong_format] {
        assert!(!validator.is_valid(&broken), "accepted {broken}");
    }
}
