//! `GET /metrics`: each family moves under traffic, and no tenant or endpoint id shows.

use herald_projector::clickhouse_hold::WriteHold;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::Duration;

/// The value of the sample written exactly `series` (name with its labels), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

async fn scrape(api: &Api) -> anyhow::Result<String> {
    let response = api.http.get(api.url("/metrics")).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET /metrics: {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(content_type.starts_with("text/plain"), "{content_type}");
    Ok(response.text().await?)
}

#[tokio::test]
async fn every_metric_family_moves_under_traffic() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("metrics").await?;
    let healthy = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.script([Reply::status(503)]);
    let healthy_endpoint = api
        .create_endpoint(&tenant, json!({ "url": healthy.url, "events": ["m.ok"] }))
        .await?;
    api.create_endpoint(&tenant, json!({ "url": flaky.url, "events": ["m.flaky"] }))
        .await?;
    let before = scrape(&api).await?;

    let mut events = Vec::new();
    for index in 0..3 {
        events.push(
            api.send_event(
                &tenant,
                json!({ "type": "m.ok", "payload": { "n": index } }),
            )
            .await?,
        );
    }
    events.push(
        api.send_event(&tenant, json!({ "type": "m.flaky", "payload": {} }))
            .await?,
    );
    for event_id in &events {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }
    let grew = |series: &'static str, by: f64| {
        let before = before.clone();
        let api = &api;
        async move {
            wait_until(Duration::from_secs(10), series, || async {
                let after = scrape(api).await.ok()?;
                (sample(&after, series) - sample(&before, series) >= by).then_some(after)
            })
            .await
        }
    };
    grew("herald_events_accepted_total", 4.0).await?;
    grew(
        "herald_http_requests_total{route=\"/v1/events\",method=\"POST\",status=\"2xx\"}",
        4.0,
    )
    .await?;
    grew(
        "herald_delivery_attempts_total{outcome=\"succeeded\",error_class=\"none\"}",
        4.0,
    )
    .await?;
    grew(
        "herald_delivery_attempts_total{outcome=\"retry_scheduled\",error_class=\"http_5xx\"}",
        1.0,
    )
    .await?;
    grew("herald_ingest_duration_seconds_count", 4.0).await?;
    grew("herald_event_append_duration_seconds_count", 4.0).await?;
    grew("herald_attempt_duration_seconds_count", 5.0).await?;
    grew("herald_log_publish_duration_seconds_count", 8.0).await?;
    let after = grew("herald_accept_to_delivered_seconds_count", 4.0).await?;
    assert!(
        after.contains("\nherald_outbox_backlog "),
        "the outbox backlog is reported"
    );

    // A slow receiver keeps an attempt in flight, and the gauge shows it.
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(2));
    api.create_endpoint(&tenant, json!({ "url": slow.url, "events": ["m.slow"] }))
        .await?;
    api.send_event(&tenant, json!({ "type": "m.slow", "payload": {} }))
        .await?;
    wait_until(Duration::from_secs(10), "an attempt in flight", || async {
        let now = scrape(&api).await.ok()?;
        (sample(&now, "herald_attempts_in_flight") >= 1.0).then_some(())
    })
    .await?;
    // Bounded labels only: no tenant, endpoint or event id.
    for id in [&tenant.tenant_id, &healthy_endpoint.endpoint_id, &events[0]] {
        assert!(!after.contains(id.as_str()), "an id in /metrics");
    }
    assert!(
        after.contains("route=\"/v1/events/{event_id}\""),
        "routes by template"
    );
    Ok(())
}

/// The sampled gauges: retries waiting, open breakers and both projections' lag. The Herald
/// under test is shared by tests running at once, so this test compares the gauges with what
/// its own traffic adds or takes away, never with exact totals.
#[tokio::test]
async fn waiting_retries_open_breakers_and_projection_lag_are_reported() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("metrics-gauges").await?;
    // Several endpoints, so that this test's own breakers outweigh those other tests open
    // and close meanwhile. Three failures open each one's breaker (test stack: after 3, for
    // 1 s), and each failed delivery's retry waits a minute in the retry stream.
    const ENDPOINTS: usize = 6;
    let mut receivers = Vec::new();
    for _ in 0..ENDPOINTS {
        let receiver = Receiver::start().await;
        receiver.script((0..3).map(|_| Reply::status(503)));
        api.create_endpoint(
            &tenant,
            json!({
                "url": receiver.url,
                "events": ["g.fail"],
                "retry_policy": { "initial_delay_ms": 60_000, "multiplier": 1.0, "max_delay_ms": 60_000 }
            }),
        )
        .await?;
        receivers.push(receiver);
    }
    for index in 0..3 {
        api.send_event(
            &tenant,
            json!({ "type": "g.fail", "payload": { "n": index } }),
        )
        .await?;
    }
    wait_until(Duration::from_secs(10), "three failures each", || async {
        receivers
            .iter()
            .all(|receiver| receiver.count() >= 3)
            .then_some(())
    })
    .await?;
    let ours = ENDPOINTS as f64;
    wait_until(
        Duration::from_secs(15),
        "the retries waiting and the breakers open",
        || async {
            let now = scrape(&api).await.ok()?;
            (sample(&now, "herald_retries_waiting") >= 3.0 * ours
                && sample(&now, "herald_breakers_open") >= ours)
                .then_some(())
        },
    )
    .await?;

    // The receivers answer 200 now: the next delivery to each is the probe that closes its
    // breaker. Other tests may open breakers of their own meanwhile, so the count must fall
    // by at least half of ours rather than by all of them.
    let open_with_ours = sample(&scrape(&api).await?, "herald_breakers_open");
    let probe = api
        .send_event(&tenant, json!({ "type": "g.fail", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &probe, "delivered")
        .await?;
    wait_until(
        Duration::from_secs(10),
        "the breakers counted closed",
        || async {
            let now = scrape(&api).await.ok()?;
            (sample(&now, "herald_breakers_open") <= open_with_ours - ours / 2.0).then_some(())
        },
    )
    .await?;

    // Held back as a rebuild's switch-over holds it, the ClickHouse projection falls behind
    // by this test's next attempt record, and its lag shows it.
    let clickhouse_messages = "herald_projection_lag_messages{projection=\"clickhouse\"}";
    let clickhouse_seconds = "herald_projection_lag_seconds{projection=\"clickhouse\"}";
    let hold = WriteHold::for_database(api.postgres().await?, &api.herald.clickhouse_database)
        .exclusive()
        .await?;
    let lagging = async {
        api.send_event(&tenant, json!({ "type": "g.fail", "payload": {} }))
            .await?;
        wait_until(Duration::from_secs(15), "the ClickHouse lag", || async {
            let now = scrape(&api).await.ok()?;
            (sample(&now, clickhouse_messages) >= 1.0 && sample(&now, clickhouse_seconds) > 0.0)
                .then_some(())
        })
        .await
    }
    .await;
    // Let go before anything else: the shared Herald's other tests wait for ClickHouse too.
    hold.release().await;
    lagging?;

    // Both projections report their lag, and it falls to nothing once they have caught up
    // with this test's messages (sampled every 2 s).
    wait_until(
        Duration::from_secs(30),
        "both projections caught up",
        || async {
            let now = scrape(&api).await.ok()?;
            ["postgres", "clickhouse"]
                .iter()
                .all(|projection| {
                    let messages =
                        format!("herald_projection_lag_messages{{projection=\"{projection}\"}}");
                    let seconds =
                        format!("herald_projection_lag_seconds{{projection=\"{projection}\"}}");
                    now.contains(&format!("\n{messages} "))
                        && now.contains(&format!("\n{seconds} "))
                        && sample(&now, &messages) == 0.0
                        && sample(&now, &seconds) == 0.0
                })
                .then_some(())
        },
    )
    .await?;
    Ok(())
}
