//! A 202 is a promise. Under load from clients that repeat each request with its idempotency
//! key until it is accepted, against a receiver that fails one request in ten, each component
//! is SIGKILLed twice mid-load and brought back: the all-in-one `herald`, each service run on
//! its own, `nats-server`, PostgreSQL and ClickHouse. Afterwards every accepted event was
//! delivered, none exists twice, no delivery is left waiting, and the log and both read models
//! agree attempt for attempt (`herald_tests::kill_load`, and `herald reconcile`, which must
//! also catch a difference made on purpose).
//!
//! Each scenario runs on a stack of its own (`PrivateStack`), so that killing a server
//! disturbs nothing else; the scenarios take turns, since the machine has two cores.

use herald_tests::kill_load::{check_nothing_lost, send_with_repeats, LoadShape, Progress};
use herald_tests::private_stack::{PrivateStack, Server};
use herald_tests::process::{HeraldProcess, StackUrls};
use herald_tests::receiver::Receiver;
use herald_tests::{view_digest, wait_until, Api};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// Long enough (about ten seconds) for both kills to land while events are being accepted,
/// delivered and retried.
const LOAD: LoadShape = LoadShape {
    events: 2_000,
    clients: 16,
    per_second: 200.0,
    deadline: Duration::from_secs(240),
};

/// One scenario at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Debug)]
enum Victim {
    HeraldAll,
    Service(&'static str),
    Store(Server),
}

const SETTINGS: &[(&str, &str)] = &[
    // Work held by a killed delivery process comes back after this.
    ("HERALD_ACK_WAIT_MS", "3000"),
    ("HERALD_REQUEST_TIMEOUT_MS", "2000"),
    ("HERALD_CLICKHOUSE_FLUSH_MS", "200"),
    // A store that is down is noticed within seconds, not after the default 30 s.
    ("HERALD_OVERDUE_AFTER_MS", "5000"),
];

struct Installation {
    /// The process that takes events (`herald all` or `herald command`) first.
    processes: Vec<HeraldProcess>,
}

impl Installation {
    async fn start(stack: &PrivateStack, separate_services: bool) -> anyhow::Result<Self> {
        let urls = StackUrls::from(stack);
        let first = if separate_services { "command" } else { "all" };
        let main = HeraldProcess::start_service_on(HERALD, &urls, first, SETTINGS).await?;
        let mut processes = vec![];
        if separate_services {
            for service in ["delivery", "projector", "query"] {
                processes.push(main.sibling(service).await?);
            }
        }
        processes.insert(0, main);
        Ok(Self { processes })
    }

    fn process(&mut self, service: &str) -> &mut HeraldProcess {
        let index = ["command", "delivery", "projector", "query"]
            .iter()
            .position(|name| *name == service)
            .unwrap_or(0);
        &mut self.processes[index]
    }
}

async fn kill_twice_under_load(victim: Victim) -> anyhow::Result<()> {
    let _turn = TURN.lock().await;
    let stack = PrivateStack::start("kill")?;
    let separate = matches!(victim, Victim::Service(_));
    let mut installation = Installation::start(&stack, separate).await?;
    let api = Arc::new(Api::with(installation.processes[0].herald.clone()));
    let tenant = Arc::new(api.create_tenant("kill").await?);
    let receiver = Receiver::start().await;
    receiver.fail_every(10);
    api.create_endpoint(
        &tenant,
        json!({
            "url": receiver.url,
            "retry_policy": { "max_attempts": 12, "initial_delay_ms": 100, "multiplier": 2.0,
                              "max_delay_ms": 1000, "deadline_ms": 600000 }
        }),
    )
    .await?;

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let load = tokio::spawn(send_with_repeats(
        api.clone(),
        tenant.clone(),
        LOAD,
        progress.clone(),
    ));
    let mut recoveries = Vec::new();
    for fraction in [4, 2] {
        let mark = LOAD.events / fraction;
        wait_until(Duration::from_secs(120), "load to progress", || async {
            (progress.accepted.load(Ordering::Relaxed) >= mark).then_some(())
        })
        .await?;
        let killed_at = Instant::now();
        let refused_before = progress.refused.load(Ordering::Relaxed);
        match victim {
            Victim::HeraldAll => installation.processes[0].kill()?,
            Victim::Service(service) => installation.process(service).kill()?,
            Victim::Store(server) => stack.kill(server)?,
        }
        // Down until the clients notice: a store ingest needs longer than Herald waits for
        // it (5 s), so that requests are refused; anything else two seconds at most.
        let outage = match victim {
            Victim::Store(Server::Nats | Server::Postgres) => Duration::from_secs(12),
            _ => Duration::from_secs(2),
        };
        let _ = wait_until(outage, "the clients to notice", || async {
            (progress.refused.load(Ordering::Relaxed) > refused_before + 20).then_some(())
        })
        .await;
        let received_before = receiver.count();
        match victim {
            Victim::HeraldAll => installation.processes[0].launch().await?,
            Victim::Service(service) => installation.process(service).launch().await?,
            Victim::Store(_) => stack.up()?,
        }
        let restarted_at = Instant::now();
        // Delivery resumes within seconds of the restart (unless it had nothing left to do).
        wait_until(Duration::from_secs(30), "delivery to resume", || async {
            let resumed = receiver.count() > received_before;
            let all_done = progress.accepted.load(Ordering::Relaxed) >= LOAD.events
                && receiver.distinct_ids().len() >= LOAD.events;
            (resumed || all_done).then_some(())
        })
        .await?;
        recoveries.push((
            restarted_at - killed_at,
            restarted_at.elapsed(),
            progress.accepted.load(Ordering::Relaxed),
        ));
    }
    let outcome = load.await?;
    let load_took = started.elapsed();
    // Ingest needs the log and Postgres: while either is down, requests get a 503 problem
    // (`check_nothing_lost` fails on any other 5xx), and in time (status 0: the client gave
    // up after 10 s).
    if matches!(victim, Victim::Store(Server::Nats | Server::Postgres)) {
        anyhow::ensure!(
            outcome.refusals.get(&503).copied().unwrap_or(0) > 0
                && !outcome.refusals.contains_key(&0),
            "while {victim:?} was down, requests were not answered with 503: {:?}",
            outcome.refusals
        );
    }
    let log = check_nothing_lost(
        &api,
        &tenant,
        &outcome,
        || receiver.distinct_ids(),
        Duration::from_secs(120),
    )
    .await?;
    // `herald reconcile` finds the log and both views agreeing, and finds what is made to
    // differ.
    let reconciler = &installation.processes[0];
    let agreed = reconciler.run_task(&["reconcile", "--since", "1h"]).await?;
    anyhow::ensure!(
        agreed.status.success(),
        "reconcile after killing {victim:?}: {}{}",
        String::from_utf8_lossy(&agreed.stdout),
        String::from_utf8_lossy(&agreed.stderr)
    );
    if matches!(victim, Victim::Service("projector")) {
        check_rebuilds_reproduce_the_views(&api, reconciler).await?;
        check_reconcile_catches_differences(&api, reconciler).await?;
    }
    // At-least-once: a delivery may succeed twice (same `webhook-id`) after a kill; counted,
    // not forbidden.
    let mut successes: std::collections::HashMap<String, usize> = Default::default();
    for request in receiver.requests() {
        if request.answered_status == 200 {
            *successes
                .entry(request.header("webhook-id").to_owned())
                .or_default() += 1;
        }
    }
    let delivered_twice = successes.values().filter(|count| **count > 1).count();
    println!(
        "{victim:?}: {} events accepted in {load_took:.1?} by {} clients; refusals by status {:?}; \
         kills (down for, delivery resumed after, accepted so far): {recoveries:?}; \
         {} attempts in the log, {} requests received, {delivered_twice} events delivered \
         successfully more than once; lost 0, in the log twice 0",
        outcome.accepted.len(),
        LOAD.clients,
        outcome.refusals,
        log.attempts.len(),
        receiver.count(),
    );
    Ok(())
}

/// After the kills, rebuilding both views from the log changes neither.
async fn check_rebuilds_reproduce_the_views(
    api: &Api,
    process: &HeraldProcess,
) -> anyhow::Result<()> {
    let pool = api.postgres().await?;
    let postgres = view_digest::postgres(&pool).await?;
    let clickhouse = view_digest::clickhouse(api).await?;
    for target in ["postgres", "clickhouse"] {
        let rebuilt = process.run_task(&["rebuild", "--target", target]).await?;
        anyhow::ensure!(
            rebuilt.status.success(),
            "rebuild --target {target}: {}{}",
            String::from_utf8_lossy(&rebuilt.stdout),
            String::from_utf8_lossy(&rebuilt.stderr)
        );
    }
    let postgres_rebuilt = view_digest::postgres(&pool).await?;
    let clickhouse_rebuilt = view_digest::clickhouse(api).await?;
    anyhow::ensure!(
        postgres == postgres_rebuilt && clickhouse == clickhouse_rebuilt,
        "rebuilding from the log changed a view the kills left behind:\n\
         before {postgres:?} {clickhouse:?}\nafter  {postgres_rebuilt:?} {clickhouse_rebuilt:?}"
    );
    Ok(())
}

/// One attempt row deleted from Postgres, the same attempt added again to ClickHouse (its
/// rollups count it too) and once more to the minute rollup alone: the reconciler reports
/// exactly those counts and exits 1.
async fn check_reconcile_catches_differences(
    api: &Api,
    reconciler: &HeraldProcess,
) -> anyhow::Result<()> {
    let pool = api.postgres().await?;
    let (attempt_id, tenant_id, endpoint_id): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        sqlx::query_as(
            "DELETE FROM attempts WHERE attempt_id = (SELECT attempt_id FROM attempts LIMIT 1) \
             RETURNING attempt_id, tenant_id, endpoint_id",
        )
        .fetch_one(&pool)
        .await?;
    api.clickhouse(&format!(
        "INSERT INTO attempts SELECT * FROM attempts WHERE attempt_id = '{attempt_id}'"
    ))
    .await?;
    api.clickhouse(&format!(
        "INSERT INTO sli_minute_refill SELECT started_at, tenant_id, endpoint_id, event_type, \
           outcome, error_class, latency_ms, end_to_end_ms, log_sequence \
         FROM attempts WHERE attempt_id = '{attempt_id}' LIMIT 1"
    ))
    .await?;
    let found = reconciler.run_task(&["reconcile", "--since", "1h"]).await?;
    let stdout = String::from_utf8_lossy(&found.stdout);
    anyhow::ensure!(
        found.status.code() == Some(1),
        "reconcile did not fail on injected differences: {stdout}{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("tenant "))
        .collect();
    anyhow::ensure!(
        lines.len() == 1
            && lines[0].contains(&tenant_id.to_string())
            && lines[0].contains(&endpoint_id.to_string()),
        "expected one difference for the changed attempt's tenant and endpoint: {stdout}"
    );
    let counts: Vec<u64> = lines[0]
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|part| part.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(
        matches!(
            counts[..],
            [log, postgres, clickhouse, minute, hour]
                if postgres + 1 == log && clickhouse == log + 1 && minute == log + 2
                    && hour == log + 1
        ),
        "expected postgres one below the log, clickhouse and its hour rollup one above and its \
         minute rollup two above: {stdout}"
    );
    Ok(())
}

#[tokio::test]
async fn killing_herald_all_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::HeraldAll).await
}

#[tokio::test]
async fn killing_the_command_service_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Service("command")).await
}

#[tokio::test]
async fn killing_the_delivery_service_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Service("delivery")).await
}

#[tokio::test]
async fn killing_the_projector_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Service("projector")).await
}

#[tokio::test]
async fn killing_the_query_service_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Service("query")).await
}

#[tokio::test]
async fn killing_nats_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Store(Server::Nats)).await
}

#[tokio::test]
async fn killing_postgres_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Store(Server::Postgres)).await
}

#[tokio::test]
async fn killing_clickhouse_loses_no_accepted_event() -> anyhow::Result<()> {
    kill_twice_under_load(Victim::Store(Server::ClickHouse)).await
}

/// The narrowest window of all, made wide on purpose: the key is claimed, the append waits for
/// a log that hangs, and Herald dies right then. The client's repeat must get the event
/// into the log (under the id it was claimed for) and it must be delivered.
#[tokio::test]
async fn a_request_killed_between_claim_and_append_is_completed_by_its_repeat() -> anyhow::Result<()>
{
    let _turn = TURN.lock().await;
    let stack = PrivateStack::start("claim")?;
    let mut herald =
        HeraldProcess::start_service_on(HERALD, &StackUrls::from(&stack), "all", SETTINGS).await?;
    let api = Arc::new(Api::with(herald.herald.clone()));
    let tenant = Arc::new(api.create_tenant("claim").await?);
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let body = json!({ "type": "t", "payload": { "n": 1 }, "idempotency_key": "cut-short" });

    // A hung log: the request claims its key and then waits for the append's answer (a log
    // known to be unreachable would be answered 503 at once, before any claim).
    stack.pause_nats()?;
    let first = {
        let (api, tenant, body) = (api.clone(), tenant.clone(), body.clone());
        tokio::spawn(async move { api.post_event(&tenant, body).await })
    };
    let pool = api.postgres().await?;
    wait_until(Duration::from_secs(10), "the key to be claimed", || async {
        let claimed: Option<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT event_id FROM idempotency_keys WHERE idempotency_key = 'cut-short'",
        )
        .fetch_optional(&pool)
        .await
        .ok()?;
        claimed.map(|_| ())
    })
    .await?;
    anyhow::ensure!(
        !first.is_finished(),
        "the first request was answered before the kill"
    );
    herald.kill()?;
    let _ = first.await;
    // Killed while hung, the server never appends what it was sent.
    stack.kill(Server::Nats)?;
    stack.up()?;
    herald.launch().await?;

    let (status, answer) = api.post_event(&tenant, body.clone()).await?;
    anyhow::ensure!(status == 202, "the repeat was answered {status} {answer}");
    let event_id = answer["event_id"].as_str().unwrap_or_default().to_owned();
    wait_until(Duration::from_secs(30), "the event delivered", || async {
        receiver.distinct_ids().contains(&event_id).then_some(())
    })
    .await?;
    // Repeated once more, it is the same event, and the log holds it once.
    let (_, again) = api.post_event(&tenant, body).await?;
    anyhow::ensure!(again["event_id"] == event_id, "a second event: {again}");
    let log = herald_tests::kill_load::read_log(&api).await?;
    anyhow::ensure!(
        log.events.len() == 1 && log.events.get(&event_id) == Some(&1),
        "the log holds {:?}",
        log.events
    );
    Ok(())
}
