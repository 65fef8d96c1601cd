//! Per-endpoint delivery objectives: the error budget left is shown on the endpoint, and a
//! fast burn is announced once as `herald.endpoint.slo_burn` to the endpoints that list it.
//! Test stack: objectives are evaluated every 300 ms.

use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_tight_objective_burning_fast_is_announced_once_and_shows_its_budget(
) -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("objectives").await?;
    let operations = Receiver::start().await;
    api.create_endpoint(
        &tenant,
        json!({ "url": operations.url, "events": ["herald.endpoint.slo_burn"] }),
    )
    .await?;
    // 400s fail every attempt without opening the breaker (a live receiver refusing).
    let refusing = Receiver::start().await;
    refusing.script((0..12).map(|_| Reply::status(400)));
    let objective = api
        .create_endpoint(
            &tenant,
            json!({ "url": refusing.url, "events": ["slo.test"], "slo": { "success_rate": 0.99, "window_days": 7 } }),
        )
        .await?;
    assert_eq!(
        objective.body["slo"],
        json!({ "success_rate": 0.99, "window_days": 7 })
    );
    let unwatched = api
        .create_endpoint(
            &tenant,
            json!({ "url": operations.url, "events": ["slo.other"] }),
        )
        .await?;
    for index in 0..12 {
        api.send_event(
            &tenant,
            json!({ "type": "slo.test", "payload": { "index": index } }),
        )
        .await?;
    }

    let announced = wait_until(Duration::from_secs(30), "the burn announced", || async {
        operations
            .requests()
            .iter()
            .map(|request| request.json())
            .find(|body| body["type"] == "herald.endpoint.slo_burn")
    })
    .await?;
    let data = &announced["data"];
    assert_eq!(
        data["endpoint_id"],
        objective.endpoint_id.as_str(),
        "{announced}"
    );
    assert_eq!(data["alert"], "fast", "{announced}");
    assert_eq!(
        data["objective"],
        json!({ "success_rate": 0.99, "window_days": 7 })
    );
    let burn_rate = data["burn_rate"].as_f64().unwrap_or_default();
    assert!(
        (burn_rate - 100.0).abs() < 1e-6,
        "every attempt failed: {announced}"
    );
    assert!(
        data["budget_remaining"].as_f64().unwrap_or(1.0) < 0.0,
        "{announced}"
    );

    // The endpoint shows the budget overspent and the alert firing; two rounds later there is
    // still exactly one announcement (an alert that goes on is not announced again).
    let path = format!("/v1/webhook_endpoints/{}", objective.endpoint_id);
    let first: Value = wait_until(Duration::from_secs(10), "the status shown", || async {
        let (status, body) = api.get(&tenant, &path).await.ok()?;
        (status == 200 && body["slo"]["status"]["alert"] == "fast").then_some(body)
    })
    .await?;
    let status = &first["slo"]["status"];
    assert_eq!(status["failures"], 12, "{first}");
    assert_eq!(status["attempts"], 12, "{first}");
    assert!(
        status["budget_remaining"].as_f64().unwrap_or(1.0) < 0.0,
        "{first}"
    );
    assert!(status["alert_since"].is_string(), "{first}");
    let evaluated = |body: &Value| {
        body["slo"]["status"]["evaluated_at"]
            .as_str()
            .map(str::to_owned)
    };
    let mut last = evaluated(&first);
    for round in 0..2 {
        last = wait_until(
            Duration::from_secs(10),
            &format!("round {round}"),
            || async {
                let (_, body) = api.get(&tenant, &path).await.ok()?;
                let at = evaluated(&body);
                (at != last).then_some(at)
            },
        )
        .await?;
    }
    assert_eq!(first["slo"]["status"]["alert_since"], {
        let (_, body) = api.get(&tenant, &path).await?;
        body["slo"]["status"]["alert_since"].clone()
    });
    let announcements = operations
        .requests()
        .iter()
        .filter(|request| request.json()["type"] == "herald.endpoint.slo_burn")
        .count();
    assert_eq!(announcements, 1);

    let (_, other) = api
        .get(
            &tenant,
            &format!("/v1/webhook_endpoints/{}", unwatched.endpoint_id),
        )
        .await?;
    assert_eq!(other["slo"], Value::Null, "no objective, no status");

    // Removing the objective removes its status.
    let (status, changed) = api.patch(&tenant, &path, json!({ "slo": null })).await?;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["changed"], json!(["slo"]));
    let (_, body) = api.get(&tenant, &path).await?;
    assert_eq!(body["slo"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn objectives_outside_the_documented_range_are_refused() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("objectives-refused").await?;
    for (slo, field) in [
        (json!({ "success_rate": 1.0 }), "slo.success_rate"),
        (json!({ "success_rate": 0.2 }), "slo.success_rate"),
        (
            json!({ "success_rate": 0.99, "window_days": 0 }),
            "slo.window_days",
        ),
        (
            json!({ "success_rate": 0.99, "window_days": 91 }),
            "slo.window_days",
        ),
    ] {
        let (status, problem) = api
            .post(
                &tenant,
                "/v1/webhook_endpoints",
                json!({ "url": "http://127.0.0.1:9/hook", "slo": slo }),
            )
            .await?;
        assert_eq!(status, 422, "{slo}: {problem}");
        assert_eq!(problem["field"], field, "{slo}: {problem}");
    }
    Ok(())
}
