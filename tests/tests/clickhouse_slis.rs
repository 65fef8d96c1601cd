//! The SLI rollups in ClickHouse (docs/clickhouse.md, ADR 0012) against the real stack and its
//! ClickHouse 18.16: real receivers that succeed, fail, are retried, dead-lettered and outlived
//! by their events. The rollups must hold exactly the counts of the raw `attempts`, their
//! quantiles must lie within the raw extremes, every example query of docs/clickhouse.md must
//! run (with and without 18.16's predicate push-down, giving the same answers), a restart must
//! count nothing twice, and a rollup that missed an insert must be completed from `attempts`
//! when the projector starts. Each test runs a Herald of its own, which it stops and starts.

use anyhow::{bail, ensure, Context, Result};
use herald::{HeraldConfig, Service};
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{
    create_database, env_or, rand_u32, replace_database, wait_until, Api, Tenant, TestHerald,
};
use serde_json::json;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DOC: &str = include_str!("../../docs/clickhouse.md");
/// The tenant id the examples of docs/clickhouse.md use.
const EXAMPLE_TENANT: &str = "0190a1b2-0000-7000-8000-000000000001";
/// Error classes of attempts that made no request (as in migrations/clickhouse/0003).
const NO_REQUEST: &str =
    "('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')";

/// `herald all` in this test's runtime, on resources of its own, that can be stopped and
/// started again on the same resources.
struct OwnHerald {
    config: HeraldConfig,
    herald: TestHerald,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), herald::app::RunError>>>,
}

impl OwnHerald {
    async fn start() -> Result<Self> {
        let run_id = format!("s{:08x}", rand_u32());
        let defaults = herald::config::StackConfig::default();
        let server_database_url = env_or("HERALD_DATABASE_URL", &defaults.database_url);
        let database = format!("herald_{run_id}");
        create_database(&server_database_url, &database).await?;
        let mut config = HeraldConfig::default();
        config.stack.nats_url = env_or("HERALD_NATS_URL", &defaults.nats_url);
        config.stack.database_url = replace_database(&server_database_url, &database);
        config.stack.database_max_connections = 16;
        config.stack.clickhouse_url = env_or("HERALD_CLICKHOUSE_URL", &defaults.clickhouse_url);
        config.stack.clickhouse_database = database.clone();
        config.stack.namespace = run_id.clone();
        let admin_token = format!("adm_{run_id}");
        config.command.admin_token = Some(admin_token.clone().into());
        config.secrets.secrets_key = Some(herald_tests::test_secrets_key().into());
        config.command.allowed_target_cidrs = "127.0.0.0/8".to_owned();
        config.delivery.allowed_target_cidrs = "127.0.0.0/8".to_owned();
        config.delivery.request_timeout_ms = 2_000;
        config.delivery.connect_timeout_ms = 1_000;
        config.delivery.retry_initial_delay_ms = 300;
        config.delivery.retry_multiplier = 2.0;
        config.delivery.retry_max_delay_ms = 2_000;
        config.delivery.retry_max_attempts = 4;
        config.delivery.shutdown_grace_ms = 1_000;
        // The failing endpoints would open their breakers and park deliveries for a while.
        config.delivery.breaker_failure_threshold = 100_000;
        config.projector.clickhouse_flush_ms = 200;
        let herald = TestHerald {
            base_url: String::new(),
            nats_url: config.stack.nats_url.clone(),
            namespace: run_id,
            admin_token,
            database_url: config.stack.database_url.clone(),
            clickhouse_url: config.stack.clickhouse_url.clone(),
            clickhouse_database: database,
        };
        let mut own = Self {
            config,
            herald,
            shutdown: CancellationToken::new(),
            task: None,
        };
        own.launch().await?;
        Ok(own)
    }

    /// Starts Herald (again) and waits until it answers.
    async fn launch(&mut self) -> Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.herald.base_url = format!("http://{}", listener.local_addr()?);
        self.shutdown = CancellationToken::new();
        let task = tokio::spawn(herald::run(
            Service::All,
            self.config.clone(),
            listener,
            self.shutdown.clone(),
        ));
        self.task = Some(task);
        let client = herald_tests::http_client();
        let url = format!("{}/healthz", self.herald.base_url);
        wait_until(Duration::from_secs(60), "herald /healthz", || async {
            let response = client.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await
    }

    /// Stops Herald gracefully and waits until it has.
    async fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .context("herald did not stop within 60 s")???;
        }
        Ok(())
    }

    fn api(&self) -> Api {
        Api::with(self.herald.clone())
    }
}

impl Drop for OwnHerald {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// ClickHouse's TabSeparated answer, one vector of fields per row.
async fn rows(api: &Api, sql: &str) -> Result<Vec<Vec<String>>> {
    let text = api.clickhouse(sql).await?;
    Ok(text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect())
}

async fn count(api: &Api, sql: &str) -> Result<u64> {
    let text = api.clickhouse(sql).await?;
    text.parse()
        .with_context(|| format!("not a count: {text:?} from {sql}"))
}

/// Where the rollups of `tenant` differ from the counts taken from its raw attempts; None when
/// they agree everywhere.
async fn rollup_differences(api: &Api, tenant: &str) -> Result<Option<String>> {
    let mut differences = Vec::new();
    for (grain, bucket) in [("minute", "toStartOfMinute"), ("hour", "toStartOfHour")] {
        // Per key of the rollup: period, endpoint, event type, outcome, error class.
        let keys = "period_start, endpoint_id, event_type, outcome, error_class";
        let raw = rows(
            api,
            &format!(
                "SELECT {bucket}(started_at) AS period_start, endpoint_id, event_type, outcome, \
                 error_class, count() FROM attempts WHERE tenant_id = '{tenant}' \
                 GROUP BY {keys} ORDER BY {keys}"
            ),
        )
        .await?;
        let rolled = rows(
            api,
            &format!(
                "SELECT {keys}, attempts FROM sli_outcomes_{grain} \
                 WHERE tenant_id = '{tenant}' ORDER BY {keys}"
            ),
        )
        .await?;
        if raw != rolled {
            differences.push(format!(
                "sli_outcomes_{grain}: {rolled:?}\n  attempts: {raw:?}"
            ));
        }
        // The finished counts of the wide views, per endpoint and event type and per tenant.
        for (view, keys) in [
            (
                format!("sli_{grain}"),
                "period_start, endpoint_id, event_type",
            ),
            (format!("sli_tenant_{grain}"), "period_start"),
        ] {
            let raw = rows(
                api,
                &format!(
                    "SELECT {bucket}(started_at) AS period_start{extra}, count(), \
                     countIf(outcome = 'succeeded'), countIf(outcome = 'retry_scheduled'), \
                     countIf(outcome = 'failed'), countIf(outcome = 'dead_lettered'), \
                     countIf(outcome = 'expired'), countIf(error_class NOT IN {NO_REQUEST}), \
                     countIf(error_class = 'http_4xx'), countIf(error_class = 'http_5xx') \
                     FROM attempts WHERE tenant_id = '{tenant}' GROUP BY {keys} ORDER BY {keys}",
                    extra = keys.trim_start_matches("period_start"),
                ),
            )
            .await?;
            let finished = rows(
                api,
                &format!(
                    "SELECT {keys}, attempts, successes, retries_scheduled, permanent_failures, \
                     dead_letters, expirations, requests, errors_http_4xx, errors_http_5xx \
                     FROM {view} WHERE tenant_id = '{tenant}' ORDER BY {keys}"
                ),
            )
            .await?;
            if raw != finished {
                differences.push(format!("{view}: {finished:?}\n  attempts: {raw:?}"));
            }
        }
    }
    Ok((!differences.is_empty()).then(|| differences.join("\n")))
}

/// Waits until the rollups equal the raw attempts (an insert's rollup parts are written just
/// after its `attempts` part); fails with the differences if they never do.
async fn wait_for_rollups_to_match(api: &Api, tenant: &str) -> Result<()> {
    let last = std::sync::Mutex::new(String::new());
    let matched = wait_until(
        Duration::from_secs(20),
        "the rollups to equal the raw attempts",
        || async {
            let difference = match rollup_differences(api, tenant).await {
                Ok(None) => return Some(()),
                Ok(Some(differences)) => differences,
                Err(error) => error.to_string(),
            };
            *last.lock().expect("not poisoned") = difference;
            None
        },
    )
    .await;
    if matched.is_err() {
        let last = last.lock().expect("not poisoned");
        bail!("the rollups of tenant {tenant} differ from its raw attempts:\n{last}");
    }
    Ok(())
}

fn nullable(field: &str) -> Option<f64> {
    (field != "\\N").then(|| field.parse().unwrap_or(f64::NAN))
}

/// Every quantile of `sli_minute` and `sli_hour` lies within the minimum and maximum of the raw
/// values it is taken over, rises with its level, and is NULL exactly when there is no value.
async fn check_quantiles(api: &Api, tenant: &str) -> Result<()> {
    for (grain, bucket) in [("minute", "toStartOfMinute"), ("hour", "toStartOfHour")] {
        let keys = "period_start, endpoint_id, event_type";
        let raw = rows(
            api,
            &format!(
                "SELECT {bucket}(started_at) AS period_start, endpoint_id, event_type, \
                 countIf(error_class NOT IN {NO_REQUEST}), \
                 minIf(latency_ms, error_class NOT IN {NO_REQUEST}), \
                 maxIf(latency_ms, error_class NOT IN {NO_REQUEST}), \
                 countIf(outcome = 'succeeded'), minIf(end_to_end_ms, outcome = 'succeeded'), \
                 maxIf(end_to_end_ms, outcome = 'succeeded') \
                 FROM attempts WHERE tenant_id = '{tenant}' GROUP BY {keys} ORDER BY {keys}"
            ),
        )
        .await?;
        let quantiles = rows(
            api,
            &format!(
                "SELECT {keys}, attempt_latency_p50_ms, attempt_latency_p90_ms, \
                 attempt_latency_p95_ms, attempt_latency_p99_ms, end_to_end_p50_ms, \
                 end_to_end_p90_ms, end_to_end_p95_ms, end_to_end_p99_ms \
                 FROM sli_{grain} WHERE tenant_id = '{tenant}' ORDER BY {keys}"
            ),
        )
        .await?;
        ensure!(raw.len() == quantiles.len(), "sli_{grain} has other rows");
        for (raw, view) in raw.iter().zip(&quantiles) {
            ensure!(
                raw[..3] == view[..3],
                "sli_{grain}: {view:?} against {raw:?}"
            );
            for (values, extremes, what) in [
                (&view[3..7], &raw[3..6], "attempt latency"),
                (&view[7..11], &raw[6..9], "end-to-end latency"),
            ] {
                let values: Vec<Option<f64>> = values.iter().map(|v| nullable(v)).collect();
                let count: u64 = extremes[0].parse()?;
                let (min, max): (f64, f64) = (extremes[1].parse()?, extremes[2].parse()?);
                if count == 0 {
                    ensure!(
                        values.iter().all(Option::is_none),
                        "sli_{grain} {:?}: {what} quantiles {values:?} without any value",
                        &view[..3]
                    );
                    continue;
                }
                let values: Vec<f64> = values.into_iter().flatten().collect();
                ensure!(
                    values.len() == 4
                        && values.iter().all(|v| *v >= min - 0.1 && *v <= max + 0.1)
                        && values.windows(2).all(|pair| pair[0] <= pair[1] + 0.1),
                    "sli_{grain} {:?}: {what} quantiles {values:?} outside [{min}, {max}] \
                     or not rising",
                    &view[..3]
                );
            }
        }
    }
    Ok(())
}

/// The ```sql blocks of docs/clickhouse.md, with the example tenant replaced by `tenant`.
fn example_queries(tenant: &str) -> Vec<String> {
    DOC.split("```sql\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .map(|query| query.replace(EXAMPLE_TENANT, tenant))
        .collect()
}

/// Every example query runs on 18.16 and returns rows, the same with and without predicate
/// push-down (which docs/clickhouse.md recommends for dashboards on 18.16).
async fn check_examples(api: &Api, tenant: &str) -> Result<()> {
    let queries = example_queries(tenant);
    ensure!(
        queries.len() >= 5,
        "docs/clickhouse.md has too few examples"
    );
    for (index, query) in queries.iter().enumerate() {
        let mut answers = Vec::new();
        for pushdown in [0, 1] {
            let response = api
                .http
                .post(format!(
                    "{}/?database={}&enable_optimize_predicate_expression={pushdown}",
                    api.herald.clickhouse_url, api.herald.clickhouse_database
                ))
                .body(query.clone())
                .send()
                .await?;
            let status = response.status();
            let text = response.text().await?;
            ensure!(
                status.is_success(),
                "example {} of docs/clickhouse.md fails on ClickHouse 18.16 \
                 (push-down {pushdown}): {text}\n{query}",
                index + 1
            );
            answers.push(text);
        }
        ensure!(
            !answers[0].trim().is_empty(),
            "example {} returned no rows:\n{query}",
            index + 1
        );
        ensure!(
            answers[0] == answers[1],
            "example {} answers differently with predicate push-down:\n{}\n{}",
            index + 1,
            answers[0],
            answers[1]
        );
    }
    Ok(())
}

async fn concluded_deliveries(api: &Api, tenant: &str) -> Result<u64> {
    count(
        api,
        &format!(
            "SELECT count() FROM attempts WHERE tenant_id = '{tenant}' \
             AND outcome != 'retry_scheduled'"
        ),
    )
    .await
}

async fn wait_for_concluded(api: &Api, tenant: &str, deliveries: u64) -> Result<()> {
    wait_until(
        Duration::from_secs(90),
        &format!("{deliveries} concluded deliveries in ClickHouse"),
        || async {
            let concluded = concluded_deliveries(api, tenant).await.ok()?;
            (concluded >= deliveries).then_some(())
        },
    )
    .await
}

async fn raw_attempts(api: &Api, tenant: &str) -> Result<u64> {
    count(
        api,
        &format!("SELECT count() FROM attempts WHERE tenant_id = '{tenant}'"),
    )
    .await
}

async fn send(
    api: &Api,
    tenant: &Tenant,
    event_type: &str,
    extra: serde_json::Value,
) -> Result<()> {
    let mut body = json!({ "type": event_type, "payload": { "n": rand_u32() } });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    api.send_event(tenant, body).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_the_raw_attempts_and_a_restart_counts_nothing_twice() -> Result<()> {
    let mut herald = OwnHerald::start().await?;
    let api = herald.api();
    let tenant = api.create_tenant("slis").await?;
    let tenant_id = tenant.tenant_id.clone();
    let main_types = json!(["invoice.paid", "order.created"]);

    let ok = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.fail_every(2);
    let rejecting = Receiver::start().await;
    rejecting.script((0..100).map(|_| Reply::status(400)));
    let dead = Receiver::start().await;
    dead.script((0..100).map(|_| Reply::status(503)));
    let expiring = Receiver::start().await;
    expiring.script((0..100).map(|_| Reply::status(503)));
    expiring.set_delay(Duration::from_millis(400));
    for (receiver, extra) in [
        (&ok, json!({})),
        (&flaky, json!({})),
        (&rejecting, json!({})),
        (
            &dead,
            json!({ "retry_policy": { "max_attempts": 2, "initial_delay_ms": 100, "max_delay_ms": 200 } }),
        ),
    ] {
        let mut body = json!({ "url": receiver.url, "events": main_types });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        api.create_endpoint(&tenant, body).await?;
    }
    api.create_endpoint(
        &tenant,
        json!({ "url": expiring.url, "events": ["order.expiring"] }),
    )
    .await?;

    const EVENTS_PER_TYPE: u64 = 6;
    for _ in 0..EVENTS_PER_TYPE {
        send(&api, &tenant, "invoice.paid", json!({})).await?;
        send(&api, &tenant, "order.created", json!({})).await?;
    }
    for _ in 0..2 {
        let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
        send(
            &api,
            &tenant,
            "order.expiring",
            json!({ "expires_at": expires_at }),
        )
        .await?;
    }
    // Four endpoints take both main types; one takes the expiring events.
    let deliveries = 2 * EVENTS_PER_TYPE * 4 + 2;
    wait_for_concluded(&api, &tenant_id, deliveries).await?;
    wait_for_rollups_to_match(&api, &tenant_id).await?;

    // Every kind of outcome is there to be counted.
    let outcomes = rows(
        &api,
        &format!(
            "SELECT outcome, error_class, sum(attempts) FROM sli_outcomes_hour \
             WHERE tenant_id = '{tenant_id}' GROUP BY outcome, error_class ORDER BY outcome, error_class"
        ),
    )
    .await?;
    for (outcome, class) in [
        ("succeeded", ""),
        ("retry_scheduled", "http_5xx"),
        ("failed", "http_4xx"),
        ("dead_lettered", "http_5xx"),
        ("expired", "http_5xx"),
    ] {
        ensure!(
            outcomes
                .iter()
                .any(|row| row[0] == outcome && row[1] == class),
            "no {outcome}/{class} attempt among {outcomes:?}"
        );
    }
    check_quantiles(&api, &tenant_id).await?;
    check_examples(&api, &tenant_id).await?;

    // A restart resumes after what landed: nothing is inserted or counted again.
    let before = raw_attempts(&api, &tenant_id).await?;
    herald.stop().await?;
    herald.launch().await?;
    let api = herald.api();
    wait_for_rollups_to_match(&api, &tenant_id).await?;
    ensure!(raw_attempts(&api, &tenant_id).await? == before);
    send(&api, &tenant, "invoice.paid", json!({})).await?;
    wait_for_concluded(&api, &tenant_id, deliveries + 4).await?;
    wait_for_rollups_to_match(&api, &tenant_id).await?;
    let after = raw_attempts(&api, &tenant_id).await?;
    // Four deliveries of one event: ok (1), flaky (1 or 2), rejecting (1), dead (2).
    ensure!(
        (before + 5..=before + 6).contains(&after),
        "{before} attempts before the restart, {after} after one more event"
    );
    herald.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_that_missed_an_insert_is_completed_when_the_projector_starts() -> Result<()> {
    let mut herald = OwnHerald::start().await?;
    let api = herald.api();
    let tenant = api.create_tenant("slis-repair").await?;
    let tenant_id = tenant.tenant_id.clone();
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    for _ in 0..3 {
        send(&api, &tenant, "invoice.paid", json!({})).await?;
    }
    wait_for_concluded(&api, &tenant_id, 3).await?;
    wait_for_rollups_to_match(&api, &tenant_id).await?;

    // The minute rollup's view is away while two more attempts are inserted: as if the server
    // had stopped between writing `attempts` and writing that rollup.
    let minute_sum =
        format!("SELECT sum(attempts) FROM sli_outcomes_minute WHERE tenant_id = '{tenant_id}'");
    api.clickhouse("DETACH TABLE sli_minute_rollup_mv").await?;
    let detached = async {
        for _ in 0..2 {
            send(&api, &tenant, "order.created", json!({})).await?;
        }
        wait_for_concluded(&api, &tenant_id, 5).await?;
        herald.stop().await
    }
    .await;
    api.clickhouse("ATTACH TABLE sli_minute_rollup_mv").await?;
    detached?;
    ensure!(
        count(&api, &minute_sum).await? == 3,
        "the minute rollup missed nothing"
    );
    ensure!(raw_attempts(&api, &tenant_id).await? == 5);

    herald.launch().await?;
    let api = herald.api();
    wait_for_rollups_to_match(&api, &tenant_id).await?;
    ensure!(count(&api, &minute_sum).await? == 5);
    // And live inserts go on feeding both rollups.
    send(&api, &tenant, "invoice.paid", json!({})).await?;
    wait_for_concluded(&api, &tenant_id, 6).await?;
    wait_for_rollups_to_match(&api, &tenant_id).await?;
    ensure!(count(&api, &minute_sum).await? == 6);
    herald.stop().await
}
