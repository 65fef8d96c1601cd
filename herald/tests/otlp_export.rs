//! OpenTelemetry trace export against the real binary: Herald, run with
//! `HERALD_OTLP_ENDPOINT` pointing at a small OTLP/HTTP collector started here, exports an
//! `ingest` span under the caller's `traceparent` and one `attempt` span per delivery attempt
//! in the same trace, under the ingest span; each `traceparent` a receiver gets names its
//! attempt's exported span; an event sent without a `traceparent` gets a trace whose root is
//! its ingest span; spans still queued at SIGTERM are exported before the exit.

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{http_client, wait_until, Api};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// One exported span, ids in lowercase hex.
#[derive(Clone, Debug)]
struct CollectedSpan {
    service_name: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    error: bool,
}

impl CollectedSpan {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// An OTLP/HTTP (protobuf) trace receiver on a loopback port.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
}

impl Collector {
    /// Starts it; returns it and its base URL (what `HERALD_OTLP_ENDPOINT` names).
    async fn start() -> Result<(Self, String)> {
        let collector = Self::default();
        let router = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((collector, url))
    }

    fn spans(&self) -> Vec<CollectedSpan> {
        self.spans
            .lock()
            .map(|spans| spans.clone())
            .unwrap_or_default()
    }

    fn in_trace(&self, name: &str, trace_id: &str) -> Vec<CollectedSpan> {
        let mut spans: Vec<_> = self
            .spans()
            .into_iter()
            .filter(|span| span.name == name && span.trace_id == trace_id)
            .collect();
        spans.sort_by(|a, b| {
            a.attribute("attempt_number")
                .cmp(b.attribute("attempt_number"))
        });
        spans
    }
}

async fn collect(
    State(collector): State<Collector>,
    body: Bytes,
) -> Result<Vec<u8>, axum::http::StatusCode> {
    let request =
        ExportTraceServiceRequest::decode(body).map_err(|_| axum::http::StatusCode::BAD_REQUEST)?;
    let mut collected = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .iter()
            .flat_map(|resource| resource.attributes.iter())
            .find(|attribute| attribute.key == "service.name")
            .map(|attribute| text(attribute.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            collected.push(CollectedSpan {
                service_name: service_name.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: span
                    .attributes
                    .iter()
                    .map(|attribute| (attribute.key.clone(), text(attribute.value.as_ref())))
                    .collect(),
                error: span
                    .status
                    .is_some_and(|status| status.code == StatusCode::Error as i32),
            });
        }
    }
    if let Ok(mut spans) = collector.spans.lock() {
        spans.extend(collected);
    }
    Ok(ExportTraceServiceResponse::default().encode_to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        _ => String::new(),
    }
}

/// POSTs an event with the caller's `traceparent`; returns its id.
async fn send_traced_event(api: &Api, api_key: &str, traceparent: &str) -> Result<String> {
    let response = http_client()
        .post(api.url("/v1/events"))
        .bearer_auth(api_key)
        .header("traceparent", traceparent)
        .json(&json!({ "type": "order.paid", "payload": { "order": 1 } }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "event not accepted: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    Ok(body["event_id"].as_str().context("event_id")?.to_owned())
}

#[tokio::test]
async fn ingest_and_attempt_spans_join_the_callers_trace() -> Result<()> {
    let (collector, collector_url) = Collector::start().await?;
    let mut process = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_OTLP_ENDPOINT", collector_url.as_str()),
            ("HERALD_OTLP_SERVICE_NAME", "herald-otlp-test"),
            ("HERALD_RETRY_INITIAL_DELAY_MS", "200"),
        ],
    )
    .await?;
    let api = Api::with(process.herald.clone());
    let tenant = api.create_tenant("otlp").await?;
    let receiver = Receiver::start().await;
    let endpoint = api
        .create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    // The first attempt fails, the retry succeeds.
    receiver.script([Reply::status(500)]);

    let caller_trace = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span = format!("{:016x}", rand::random::<u64>() | 1);
    let event_id = send_traced_event(
        &api,
        &tenant.api_key,
        &format!("00-{caller_trace}-{caller_span}-01"),
    )
    .await?;

    wait_until(
        Duration::from_secs(20),
        "two attempts at the receiver",
        || async { (receiver.count() >= 2).then_some(()) },
    )
    .await?;
    let (ingest, attempts) = wait_until(
        Duration::from_secs(30),
        "the ingest span and two attempt spans at the collector",
        || async {
            let ingest = collector.in_trace("ingest", &caller_trace);
            let attempts = collector.in_trace("attempt", &caller_trace);
            (ingest.len() == 1 && attempts.len() >= 2).then(|| (ingest[0].clone(), attempts))
        },
    )
    .await?;

    assert_eq!(ingest.service_name, "herald-otlp-test");
    assert_eq!(
        ingest.parent_span_id, caller_span,
        "ingest under the caller's span"
    );
    assert_eq!(ingest.attribute("tenant_id"), tenant.tenant_id);
    assert_eq!(ingest.attribute("event_id"), event_id);
    assert_eq!(ingest.attribute("http.response.status_code"), "202");
    assert!(!ingest.error);

    let requests = receiver.requests();
    for (number, attempt) in attempts.iter().take(2).enumerate() {
        assert_eq!(
            attempt.attribute("attempt_number"),
            (number + 1).to_string()
        );
        assert_eq!(
            attempt.parent_span_id, ingest.span_id,
            "attempt under the ingest"
        );
        assert_eq!(attempt.attribute("tenant_id"), tenant.tenant_id);
        assert_eq!(attempt.attribute("event_id"), event_id);
        assert_eq!(attempt.attribute("endpoint_id"), endpoint.endpoint_id);
        // The receiver's work hangs under the exported attempt span.
        assert_eq!(
            requests[number].header("traceparent"),
            format!("00-{caller_trace}-{}-01", attempt.span_id),
            "attempt {}",
            number + 1
        );
    }
    let (failed, succeeded) = (&attempts[0], &attempts[1]);
    assert_eq!(failed.attribute("http.response.status_code"), "500");
    assert_eq!(failed.attribute("outcome"), "retry_scheduled");
    assert!(failed.error, "a failed attempt's span is an error");
    assert_eq!(succeeded.attribute("http.response.status_code"), "200");
    assert_eq!(succeeded.attribute("outcome"), "succeeded");
    assert!(!succeeded.error);

    // An event without a `traceparent` starts a trace of its own at the ingest span. Its
    // spans are still in the batch at SIGTERM (sent every 5 s otherwise) and are exported
    // before the process exits.
    let second_event = api
        .send_event(&tenant, json!({ "type": "order.paid", "payload": {} }))
        .await?;
    wait_until(
        Duration::from_secs(20),
        "the second event at the receiver",
        || async { (receiver.count() >= 3).then_some(()) },
    )
    .await?;
    process.terminate().await?;
    let traceparent = receiver.requests()[2].header("traceparent").to_owned();
    let second_trace = traceparent.split('-').nth(1).unwrap_or_default();
    let ingest = collector.in_trace("ingest", second_trace);
    assert_eq!(ingest.len(), 1, "exported at shutdown: {traceparent}");
    assert_eq!(ingest[0].attribute("event_id"), second_event);
    assert_eq!(
        ingest[0].parent_span_id, "",
        "a new trace starts at the ingest"
    );
    let attempt = collector.in_trace("attempt", second_trace);
    assert_eq!(attempt.len(), 1);
    assert_eq!(attempt[0].parent_span_id, ingest[0].span_id);
    assert_eq!(
        traceparent,
        format!("00-{second_trace}-{}-01", attempt[0].span_id)
    );
    Ok(())
}
