//! Secrets that stay secret, and credentials that hold across processes, tried against the
//! real binary: no plaintext signing secret or header value in any Postgres table, in the log
//! or in the service's output after create, update and rotation; a master key rotation with
//! a key file while the service runs; secrets an older release stored in the clear sealed at
//! start; previous secrets erased when their grace period ends; a revoked key refused by
//! another process within seconds; an ingest limit held across two command processes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald_tests::process::{HeraldProcess, OUTPUT_FILE_SETTING};
use herald_tests::receiver::ReceivedRequest;
use herald_tests::receiver::Receiver;
use herald_tests::signature::verify;
use herald_tests::{wait_until, Api, Tenant};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Every row of every table of the database, as text.
async fn every_row(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(pool)
    .await?;
    let mut text = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(pool)
            .await?;
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    Ok(text)
}

/// Every message of the log stream, as text.
async fn every_log_message(api: &Api) -> anyhow::Result<String> {
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(api.namespace()?.log_stream()).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut text = String::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            text.push_str(&String::from_utf8_lossy(&message.payload));
            text.push('\n');
        }
    }
    Ok(text)
}

/// The forms a secret could leak in: as given, and its key material in base64.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if let Some(material) = secret.strip_prefix("whsec_") {
        forms.push(material.to_owned());
    }
    forms
}

fn assert_absent(haystack: &str, secrets: &[String], place: &str) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !haystack.contains(&form),
                "a secret ({}…) is in {place}",
                &form[..8.min(form.len())]
            );
        }
    }
}

fn signed_by(secret: &str, request: &ReceivedRequest) -> bool {
    verify(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature"),
    )
}

fn secret() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    format!("whsec_{}", STANDARD.encode(bytes))
}

#[tokio::test]
async fn no_secret_is_stored_logged_or_printed_in_the_clear() -> anyhow::Result<()> {
    let output = std::env::temp_dir().join(format!("herald-secrets-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&output);
    let key_dir = tempdir()?;
    let key_file = key_dir.join("secrets.key");
    std::fs::write(&key_file, format!("{}\n", herald_tests::test_secrets_key()))?;
    let key_file_text = key_file.display().to_string();
    let output_text = output.display().to_string();
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_SECRETS_KEY", ""),
            ("HERALD_SECRETS_KEY_FILE", &key_file_text),
            ("RUST_LOG", "debug"),
            (OUTPUT_FILE_SETTING, &output_text),
        ],
    )
    .await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("sealed").await?;
    let receiver = Receiver::start().await;
    let (first, second, third) = (secret(), secret(), secret());
    let header_values = [
        "Bearer header-value-one-7f3a".to_owned(),
        "Bearer header-value-two-9c1e".to_owned(),
    ];
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({"url": receiver.url, "secret": first, "headers": {"Authorization": header_values[0]}}),
        )
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
    let (status, _) = api
        .patch(
            &tenant,
            &path,
            json!({"headers": {"Authorization": header_values[1], "X-Other": "other-value-5d2b"}}),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(
            &tenant,
            &format!("{path}/secret/rotate"),
            json!({"secret": second, "grace_period_seconds": 3600}),
        )
        .await?;
    assert_eq!(status, 200);
    let event_id = api
        .send_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let request = receiver.requests().remove(0);
    assert_eq!(request.header("authorization"), header_values[1]);
    assert!(
        signed_by(&second, &request) && signed_by(&first, &request),
        "both secrets sign during the grace period"
    );

    let mut secrets = vec![first.clone(), second.clone(), "other-value-5d2b".to_owned()];
    secrets.extend(header_values.iter().cloned());
    let pool = api.postgres().await?;
    assert_absent(&every_row(&pool).await?, &secrets, "a Postgres table");
    assert_absent(&every_log_message(&api).await?, &secrets, "the log");

    // A master key rotation while the service runs: the new key goes into the file, every
    // value is sealed again under it, and the running process still signs (it reads the file
    // again when it meets the new key).
    let rotation = herald.run_task(&["secrets", "rotate-key"]).await?;
    let said = String::from_utf8_lossy(&rotation.stdout).to_string();
    assert!(
        rotation.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&rotation.stderr)
    );
    let current: String = std::fs::read_to_string(&key_file)?
        .lines()
        .find(|line| !line.starts_with('#'))
        .and_then(|line| line.split_once(':'))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_default();
    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT split_part(secret, ':', 3), count(*) FROM endpoints GROUP BY 1")
            .fetch_all(&pool)
            .await?;
    assert_eq!(keys, vec![(current.clone(), 1)], "{said}");
    let event_id = api
        .send_event(
            &tenant,
            json!({"type": "a.b", "payload": {"after": "rotation"}}),
        )
        .await?;
    wait_until(
        Duration::from_secs(30),
        "a delivery after the key rotation",
        || async {
            receiver
                .requests()
                .into_iter()
                .find(|request| request.header("webhook-id") == event_id)
        },
    )
    .await
    .map(|request| {
        assert!(
            signed_by(&second, &request),
            "signed with the secret after rotation"
        )
    })?;

    // A secret written in the clear (as a release before sealing did) is sealed at start.
    sqlx::query(
        "UPDATE endpoints SET secret = $1, previous_secret = NULL WHERE endpoint_id = $2::uuid",
    )
    .bind(&third)
    .bind(&endpoint.endpoint_id)
    .execute(&pool)
    .await?;
    herald.kill()?;
    herald.launch().await?;
    let stored: String =
        sqlx::query_scalar("SELECT secret FROM endpoints WHERE endpoint_id = $1::uuid")
            .bind(&endpoint.endpoint_id)
            .fetch_one(&pool)
            .await?;
    assert!(
        stored.starts_with(&format!("sealed:v1:{current}:")),
        "sealed at start"
    );
    let event_id = api
        .send_event(
            &tenant,
            json!({"type": "a.b", "payload": {"after": "restart"}}),
        )
        .await?;
    let request = wait_until(
        Duration::from_secs(30),
        "a delivery after the restart",
        || async {
            receiver
                .requests()
                .into_iter()
                .find(|request| request.header("webhook-id") == event_id)
        },
    )
    .await?;
    assert!(signed_by(&third, &request));
    secrets.push(third.clone());
    assert_absent(
        &every_row(&pool).await?,
        &secrets,
        "a Postgres table after the restart",
    );

    // A rotation with no grace period: the previous secret is erased within seconds.
    let (status, rotated) = api
        .post(
            &tenant,
            &format!("{path}/secret/rotate"),
            json!({"grace_period_seconds": 0}),
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");
    wait_until(
        Duration::from_secs(20),
        "the previous secret erased",
        || async {
            let left: Option<String> = sqlx::query_scalar(
                "SELECT previous_secret FROM endpoints WHERE endpoint_id = $1::uuid",
            )
            .bind(&endpoint.endpoint_id)
            .fetch_one(&pool)
            .await
            .ok()?;
            left.is_none().then_some(())
        },
    )
    .await?;
    if let Some(generated) = rotated["secret"].as_str() {
        secrets.push(generated.to_owned());
    }
    herald.terminate().await?;
    let printed = std::fs::read_to_string(&output)?;
    assert!(
        printed.contains("DEBUG"),
        "the process logged at debug level"
    );
    assert_absent(&printed, &secrets, "the service's output");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_dir_all(&key_dir);
    Ok(())
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "herald-keys-{}-{}",
        std::process::id(),
        herald_tests::rand_u32()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
async fn revocation_and_ingest_limits_hold_across_processes() -> anyhow::Result<()> {
    let first = HeraldProcess::start(HERALD, &[]).await?;
    let second = first.sibling("api").await?;
    let (one, two) = (
        Api::with(first.herald.clone()),
        Api::with(second.herald.clone()),
    );
    let tenant = one.create_tenant("two-processes").await?;
    let (status, key) = one
        .post(&tenant, "/v1/api_keys", json!({"name": "soon revoked"}))
        .await?;
    assert_eq!(status, 201, "{key}");
    let doomed = Tenant {
        tenant_id: tenant.tenant_id.clone(),
        api_key: key["api_key"].as_str().unwrap_or_default().to_owned(),
    };
    // The second process has the key cached as valid.
    let (status, _) = two.get(&doomed, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 200);
    let revoked_at = Instant::now();
    let (status, _) = one
        .delete(
            &tenant,
            &format!(
                "/v1/api_keys/{}",
                key["key_id"].as_str().unwrap_or_default()
            ),
        )
        .await?;
    assert_eq!(status, 204);
    wait_until(
        Duration::from_secs(5),
        "the other process to refuse the revoked key",
        || async {
            let (status, _) = two.get(&doomed, "/v1/webhook_endpoints").await.ok()?;
            (status == 401).then_some(())
        },
    )
    .await?;
    eprintln!(
        "revoked key refused by the other process after {:?}",
        revoked_at.elapsed()
    );

    // 10 events a second with bursts of 10, shared by both processes.
    let (status, _, body) = one
        .call(
            Method::PATCH,
            &format!("/admin/v1/tenants/{}", tenant.tenant_id),
            &one.herald.admin_token,
            Some(json!({"ingest_rate_limit": {"per_second": 10, "burst": 10}})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    // The other process reads the new limit from the log (or within 5 s).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut accepted = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        for api in [&one, &two] {
            let (status, body) = api
                .post_event(&tenant, json!({"type": "a.b", "payload": {}}))
                .await?;
            match status {
                202 => accepted += 1,
                429 => {}
                other => anyhow::bail!("unexpected {other}: {body}"),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let most = 10.0 + 10.0 * elapsed;
    eprintln!(
        "{accepted} events accepted in {elapsed:.2} s by two processes (limit allows {most:.0})"
    );
    assert!(f64::from(accepted) <= most.floor(), "{accepted} > {most}");
    // Each process may hold back at most one batch a second (half a token here, rounded up
    // to one) of tokens it took but did not use.
    assert!(
        f64::from(accepted) >= 10.0 + 10.0 * elapsed - 2.0 * (elapsed.ceil() + 1.0),
        "{accepted} in {elapsed:.2} s"
    );
    Ok(())
}
