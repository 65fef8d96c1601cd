//! The dashboard as a user meets it: Debian's Chromium, driven by `playwright-core`
//! (`tests/browser/dashboard.mjs`, installed by `scripts/browser-deps.sh`, which `make test`
//! runs first), against `herald all` on the real stack and a real receiver. The script signs
//! in with an API key, reads the overview and the endpoints, finds an event, opens its
//! timeline, replays it and sees the new attempt, uses the signature verifier and opens a
//! read-only portal link; any console error fails it. Screenshots of every page go to
//! `target/dashboard-screenshots/`.

use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn a_user_finds_an_event_in_the_dashboard_and_replays_it() -> anyhow::Result<()> {
    let process = HeraldProcess::start(HERALD, &[("HERALD_SLO_EVALUATION_MS", "300")]).await?;
    let api = Api::with(process.herald.clone());
    let receiver = Receiver::start().await;
    let tenant = api.create_tenant("dashboard").await?;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "description": "orders", "slo": { "success_rate": 0.99 } }),
        )
        .await?;
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "order.created", "payload": { "order": 1042, "total": "19.90" } }),
        )
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    wait_until(
        Duration::from_secs(30),
        "the attempt in the SLIs",
        || async {
            let (_, sli) = api.get(&tenant, "/v1/sli?window=1h").await.ok()?;
            (sli["totals"]["attempts"] == 1).then_some(())
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(30),
        "the objective evaluated with the attempt",
        || async {
            let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
            let (_, body) = api.get(&tenant, &path).await.ok()?;
            (body["slo"]["status"]["attempts"] == 1).then_some(())
        },
    )
    .await?;
    let session = api
        .http
        .post(api.url("/v1/portal_sessions"))
        .bearer_auth(&tenant.api_key)
        .json(&json!({ "read_only": true }))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    let portal_url = session["url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no portal url: {session}"))?
        .to_owned();

    run_script(
        "dashboard.mjs",
        &[
            ("HERALD_URL", process.herald.base_url.as_str()),
            ("HERALD_API_KEY", &tenant.api_key),
            ("HERALD_EVENT_ID", &event_id),
            ("HERALD_ENDPOINT_ID", &endpoint.endpoint_id),
            ("HERALD_PORTAL_URL", &portal_url),
            ("HERALD_SIGNING_SECRET", &endpoint.secret),
        ],
        "dashboard-screenshots",
    )
    .await?;
    anyhow::ensure!(
        receiver.requests().len() == 2,
        "the replay from the dashboard reached the receiver: {} requests",
        receiver.requests().len()
    );
    Ok(())
}

/// The API reference at `/docs` (`tests/browser/docs.mjs`): every operation and webhook of
/// the served document rendered, the filter, deep links, keyboard and narrow screens, with
/// no console error and nothing fetched from elsewhere (the page's CSP would refuse it).
/// Screenshots go to `target/docs-screenshots/`.
#[tokio::test]
async fn the_api_reference_renders_the_document_offline() -> anyhow::Result<()> {
    let process = HeraldProcess::start_service_on(
        HERALD,
        &herald_tests::process::StackUrls::from_env(),
        "api",
        &[],
    )
    .await?;
    run_script(
        "docs.mjs",
        &[("HERALD_URL", process.herald.base_url.as_str())],
        "docs-screenshots",
    )
    .await
}

/// Runs `tests/browser/<script>` with `environment`, screenshots to `target/<screenshots>`.
/// Every step of a script has its own deadline, so it ends by itself.
async fn run_script(
    script: &str,
    environment: &[(&str, &str)],
    screenshots: &str,
) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    anyhow::ensure!(
        Path::new("/usr/bin/chromium").exists() && root.join("tests/browser/node_modules").exists(),
        "Chromium or tests/browser/node_modules is missing: run scripts/browser-deps.sh (make test does)"
    );
    let mut command = std::process::Command::new("node");
    command
        .arg(root.join("tests/browser").join(script))
        .envs(environment.iter().copied())
        .env("SCREENSHOT_DIR", root.join("target").join(screenshots));
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
