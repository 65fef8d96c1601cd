//! The OpenAPI document and the service agree, tried from outside: schemathesis (in
//! `.stack/venv`, made by `scripts/python-venv.sh`, which `make test` runs first) generates
//! requests for every operation from `/openapi.json` and runs all its checks against Herald
//! on the real stack. The Herald under test runs the API and the projector but no delivery,
//! so endpoints the fuzzer creates with made-up URLs are never called.
//!
//! Two checks are left out, each for a reason (ADR 0016):
//! - `ensure_resource_availability`: an accepted event is readable once projected, within
//!   milliseconds but not at once; that is the documented contract of a CQRS read side
//!   (`GET /v1/events/{id}` lists the 404 for it).
//! - `positive_data_acceptance`: the document does not yet state every rule a body or
//!   parameter must meet (cross-field rules, cursors, event type syntax), so the fuzzer makes
//!   requests it believes valid that Herald refuses with a 422 naming the field. Open work of
//!   issue 10.

use herald_tests::process::{HeraldProcess, StackUrls};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn schemathesis_finds_the_api_as_its_document_says() -> anyhow::Result<()> {
    let schemathesis =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack/venv/bin/schemathesis");
    anyhow::ensure!(
        schemathesis.exists(),
        "{} is missing: run scripts/python-venv.sh (make test does)",
        schemathesis.display()
    );
    let process =
        HeraldProcess::start_service_on(HERALD, &StackUrls::from_env(), "api", &[]).await?;
    let _projector = process.sibling("projector").await?;
    let api = Api::with(process.herald.clone());
    let tenant = api.create_tenant("schemathesis").await?;
    // Something to find: an endpoint and an event, so that lists and lookups have rows.
    api.create_endpoint(&tenant, json!({ "url": "http://127.0.0.1:9/hook" }))
        .await?;
    let event_id = api
        .send_event(
            &tenant,
            json!({ "type": "order.created", "payload": {"n": 1} }),
        )
        .await?;
    wait_until(Duration::from_secs(30), "the event projected", || async {
        let (status, _) = api
            .get(&tenant, &format!("/v1/events/{event_id}"))
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await?;

    let url = format!("{}/openapi.json", process.herald.base_url);
    let authorization = format!("Authorization: Bearer {}", tenant.api_key);
    let mut command = std::process::Command::new(&schemathesis);
    command
        .args([
            "run",
            &url,
            "--checks",
            "all",
            "--exclude-checks",
            "ensure_resource_availability,positive_data_acceptance",
            "--header",
            &authorization,
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
        ])
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success(),
        "schemathesis found the API and its document disagreeing:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
