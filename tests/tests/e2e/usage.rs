//! Usage metering: `/v1/usage` and `/admin/v1/usage` count exactly the traffic sent, per
//! tenant and per endpoint, and agree with the log's own records; garbage is refused.

use futures::StreamExt;
use herald_schemas::{AttemptOutcome, LogMessage};
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

/// What the log holds for the tenant: (events accepted, and attempts, retries, successes,
/// request bytes, response bytes of its attempt records).
async fn from_the_log(api: &Api, tenant: &Tenant) -> anyhow::Result<(i64, [i64; 5])> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let namespace = api.namespace()?;
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(namespace.log_stream()).await?;
    let mut events = 0;
    let mut attempts = [0i64; 5];
    for subject in [
        format!("{namespace}.events.{}", tenant.tenant_id),
        format!("{namespace}.attempts.{}", tenant.tenant_id),
    ] {
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        if consumer.cached_info().num_pending == 0 {
            continue;
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) =
            tokio::time::timeout(Duration::from_secs(10), messages.next()).await?
        {
            let message = message?;
            match LogMessage::decode(&message.payload)? {
                LogMessage::EventAccepted(_) => events += 1,
                LogMessage::AttemptRecorded(attempt) => {
                    attempts[0] += 1;
                    attempts[1] += i64::from(attempt.attempt_number > 1);
                    attempts[2] += i64::from(attempt.outcome == AttemptOutcome::Succeeded);
                    attempts[3] += i64::from(attempt.request_bytes);
                    attempts[4] += i64::from(attempt.response_bytes);
                }
                _ => {}
            }
            if message.info().map_err(anyhow::Error::msg)?.pending == 0 {
                break;
            }
        }
    }
    Ok((events, attempts))
}

fn counts(value: &Value) -> [i64; 6] {
    [
        "events_accepted",
        "attempts",
        "retries",
        "successes",
        "request_bytes",
        "response_bytes",
    ]
    .map(|field| value[field].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn usage_counts_the_traffic_sent_and_agrees_with_the_log() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("usage").await?;
    let steady = Receiver::start().await;
    steady.script((0..5).map(|_| Reply::status(200).body("ok")));
    let flaky = Receiver::start().await;
    flaky.script([Reply::status(503).body("busy")]);
    let steady_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": steady.url, "events": ["usage.test"] }),
        )
        .await?;
    let flaky_endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": flaky.url, "events": ["usage.test"] }),
        )
        .await?;
    let mut event_ids = Vec::new();
    for index in 0..5 {
        event_ids.push(
            api.send_event(
                &tenant,
                json!({ "type": "usage.test", "payload": { "index": index, "pad": "x".repeat(index * 10) } }),
            )
            .await?,
        );
    }
    for event_id in &event_ids {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }
    // Every request was answered, so every request body counts.
    let request_bytes: i64 = steady
        .requests()
        .iter()
        .chain(flaky.requests().iter())
        .map(|request| request.body.len() as i64)
        .sum();
    let expected = [5, 11, 1, 10, request_bytes, 2 * 5 + 4];

    let report = wait_until(Duration::from_secs(20), "usage projected", || async {
        let (status, report) = api.get(&tenant, "/v1/usage?by=endpoint").await.ok()?;
        (status == 200 && counts(&report["totals"]) == expected).then_some(report)
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error}; expected {expected:?}"))?;
    assert_eq!(report["granularity"], "hour");
    let periods = report["data"].as_array().cloned().unwrap_or_default();
    let mut summed = [0i64; 6];
    for period in &periods {
        for (total, count) in summed.iter_mut().zip(counts(period)) {
            *total += count;
        }
    }
    assert_eq!(
        summed, expected,
        "the periods add up to the totals: {report}"
    );

    let endpoint_totals = |endpoint_id: &str| {
        let mut summed = [0i64; 6];
        for row in report["endpoints"].as_array().into_iter().flatten() {
            if row["endpoint_id"] == endpoint_id {
                for (total, count) in summed.iter_mut().zip(counts(row)) {
                    *total += count;
                }
            }
        }
        summed
    };
    let steady_bytes: i64 = steady.requests().iter().map(|r| r.body.len() as i64).sum();
    assert_eq!(
        endpoint_totals(&steady_endpoint.endpoint_id),
        [0, 5, 0, 5, steady_bytes, 10]
    );
    assert_eq!(
        endpoint_totals(&flaky_endpoint.endpoint_id),
        [0, 6, 1, 5, request_bytes - steady_bytes, 4]
    );

    // The log's own records say the same.
    let (events, attempts) = from_the_log(&api, &tenant).await?;
    assert_eq!(
        [
            events,
            attempts[0],
            attempts[1],
            attempts[2],
            attempts[3],
            attempts[4]
        ],
        expected
    );

    // Operators see the tenant among all tenants, with the same totals, by the day too.
    let mut after = String::new();
    let found = loop {
        let response = api
            .http
            .get(api.url(&format!("/admin/v1/usage?granularity=day&limit=50{after}")))
            .bearer_auth(&api.herald.admin_token)
            .send()
            .await?;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await?;
        let row = page["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["tenant_id"] == tenant.tenant_id.as_str())
            .cloned();
        match (row, page["next_after"].as_str()) {
            (Some(row), _) => break row,
            (None, Some(next)) => after = format!("&after={next}"),
            (None, None) => anyhow::bail!("tenant missing from /admin/v1/usage"),
        }
    };
    assert_eq!(counts(&found["totals"]), expected);
    Ok(())
}

#[tokio::test]
async fn usage_refuses_only_what_does_not_parse_and_says_what_it_served() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("usage-ranges").await?;
    for (query, field) in [
        ("granularity=minute", "granularity"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("by=tenant", "by"),
    ] {
        let (status, problem) = api.get(&tenant, &format!("/v1/usage?{query}")).await?;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    let served = |query: &'static str| {
        let (api, tenant) = (&api, &tenant);
        async move {
            let (status, report) = api.get(tenant, &format!("/v1/usage?{query}")).await?;
            anyhow::ensure!(status == 200, "{query}: {status} {report}");
            Ok::<Value, anyhow::Error>(report)
        }
    };
    // Backwards is an empty range; a year of hours is served by the day; ages by the last
    // 366 days; a tenant that sent nothing used nothing.
    let backwards = served("since=2026-12-06T10:00:00Z&until=2026-12-06T09:30:00Z").await?;
    assert_eq!(backwards["since"], backwards["until"], "{backwards}");
    let year = served("since=2025-01-01T00:00:00Z&until=2026-01-01T00:00:00Z").await?;
    assert_eq!(year["granularity"], "day", "{year}");
    assert_eq!(year["since"], "2025-01-01T00:00:00Z", "{year}");
    let ages =
        served("since=0001-01-01T00:00:00Z&until=2026-12-06T00:00:00Z&granularity=day").await?;
    assert_eq!(ages["since"], "2025-12-05T00:00:00Z", "{ages}");
    assert_eq!(counts(&ages["totals"]), [0; 6]);
    assert_eq!(ages["data"], json!([]));
    let response = api
        .http
        .get(api.url("/admin/v1/usage"))
        .bearer_auth(&tenant.api_key)
        .send()
        .await?;
    assert_eq!(
        response.status(),
        401,
        "a tenant key is not the operator token"
    );
    Ok(())
}
