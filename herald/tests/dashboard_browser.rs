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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("tests/browser/dashboard.mjs");
    anyhow::ensure!(
        Path::new("/usr/bin/chromium").exists() && root.join("tests/browser/node_modules").exists(),
        "Chromium or tests/browser/node_modules is missing: run scripts/browser-deps.sh (make test does)"
    );
    let process = HeraldProcess::start(HERALD, &[]).await?;
    let api = Api::with(process.herald.clone());
    let receiver = Receiver::start().await;
    let tenant = api.create_tenant("dashboard").await?;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": receiver.url, "description": "orders" }),
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

    let screenshots = root.join("target/dashboard-screenshots");
    // Every step of the script has its own deadline, so it ends by itself.
    let mut command = std::process::Command::new("node");
    command
        .arg(&script)
        .env("HERALD_URL", &process.herald.base_url)
        .env("HERALD_API_KEY", &tenant.api_key)
        .env("HERALD_EVENT_ID", &event_id)
        .env("HERALD_ENDPOINT_ID", &endpoint.endpoint_id)
        .env("HERALD_PORTAL_URL", &portal_url)
        .env("HERALD_SIGNING_SECRET", &endpoint.secret)
        .env("SCREENSHOT_DIR", &screenshots);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success(),
        "the dashboard test failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        receiver.requests().len() == 2,
        "the replay from the dashboard reached the receiver: {} requests",
        receiver.requests().len()
    );
    Ok(())
}
