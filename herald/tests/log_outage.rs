//! The log's only server is SIGKILLed and started again a while later: `herald all` rides
//! the outage out. It answers 503 (never 202, and at once) while the log is gone, stays up — no service
//! stops for a log that cannot be read for now, the projectors' checks of the log included —
//! and once the server is back it accepts, delivers and projects again, every event it
//! accepted included.
//!
//! In the herald package for `CARGO_BIN_EXE_herald` (see `clustered_log.rs`).

use herald_tests::nats_cluster::NatsCluster;
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{events_delivered, wait_until, Api, Tenant};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// Long enough for every reader of the log to notice it is gone (pull heartbeats are missed
/// after a few seconds) and to try to read it again while it still is.
const OUTAGE: Duration = Duration::from_secs(15);
/// The read model has caught up this soon after the log is back (measured: 1.3–1.5 s since
/// the projections read again as soon as their connection is back; 7.3–9.2 s when they waited
/// for the stall detector). The connection itself comes back up to 4 s after the server does
/// (the client's reconnection backoff), so the bound is not tighter.
const PROJECTED_WITHIN: Duration = Duration::from_secs(30);
const EVENTS_BEFORE: usize = 20;
const EVENTS_AFTER: usize = 20;

/// Posts event `index` until it is answered 202 (the same idempotency key each time);
/// returns its id.
async fn send_until_accepted(api: &Api, tenant: &Tenant, index: usize) -> anyhow::Result<String> {
    let body = event(index);
    wait_until(Duration::from_secs(60), "a 202", || async {
        match api.post_event(tenant, body.clone()).await {
            Ok((202, answer)) => answer["event_id"].as_str().map(str::to_owned),
            _ => None,
        }
    })
    .await
}

fn event(index: usize) -> serde_json::Value {
    json!({ "type": "t", "payload": { "index": index }, "idempotency_key": format!("outage-{index}") })
}

fn ensure_running(herald: &mut HeraldProcess, when: &str) -> anyhow::Result<()> {
    match herald.exited() {
        None => Ok(()),
        Some(status) => anyhow::bail!("herald exited ({status}) {when}"),
    }
}

#[tokio::test]
async fn herald_rides_out_its_log_being_down_and_catches_up() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(1).await?;
    let urls = cluster.client_urls();
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_NATS_URL", urls.as_str()),
            ("HERALD_LOG_REPLICAS", "1"),
            // The 503s of the outage are expected: keep their two log lines each out of the
            // output, and every other warning in it.
            (
                "RUST_LOG",
                "warn,herald_command::events=error,herald::app=error",
            ),
        ],
    )
    .await?;
    herald.herald.nats_url = urls.clone();
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("outage").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let mut accepted = HashSet::new();
    for index in 0..EVENTS_BEFORE {
        accepted.insert(send_until_accepted(&api, &tenant, index).await?);
    }
    wait_until(
        Duration::from_secs(30),
        "the first events delivered",
        || async { accepted.is_subset(&receiver.distinct_ids()).then_some(()) },
    )
    .await?;

    cluster.kill(0)?;
    let killed_at = Instant::now();
    // While the log is gone nothing is accepted; a 202 would promise what cannot be kept.
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    let mut slowest_answer = Duration::ZERO;
    let mut index = EVENTS_BEFORE;
    while killed_at.elapsed() < OUTAGE {
        let tried_at = Instant::now();
        let status = match api.post_event(&tenant, event(index)).await {
            Ok((status, answer)) => {
                if status == 202 {
                    accepted.insert(answer["event_id"].as_str().unwrap_or_default().to_owned());
                }
                status
            }
            Err(_) => 0,
        };
        *answers.entry(status).or_default() += 1;
        // Once the connection is known to be gone, ingest says so at once instead of holding
        // the request for the publish timeout (5 s).
        if tried_at - killed_at > Duration::from_secs(1) {
            slowest_answer = slowest_answer.max(tried_at.elapsed());
        }
        index += 1;
        ensure_running(&mut herald, "while the log was down")?;
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(tried_at.elapsed())).await;
    }
    println!(
        "log down {OUTAGE:?}: answers by status {answers:?}, the slowest in {:.0} ms",
        slowest_answer.as_secs_f64() * 1000.0
    );
    assert_eq!(
        answers.get(&202),
        None,
        "events answered 202 while the log was down"
    );
    assert!(
        slowest_answer < Duration::from_secs(1),
        "an answer while the log was down took {slowest_answer:?}"
    );

    cluster.restart(0)?;
    let restarted_at = Instant::now();
    let first_after = index;
    for index in first_after..first_after + EVENTS_AFTER {
        let sent = send_until_accepted(&api, &tenant, index).await;
        // A Herald that stopped is why no 202 came (CI once waited a minute for one): say so.
        ensure_running(&mut herald, "after the log came back")?;
        accepted.insert(sent?);
    }
    println!(
        "log back: {EVENTS_AFTER} events accepted within {:.1} s",
        restarted_at.elapsed().as_secs_f64()
    );
    wait_until(
        Duration::from_secs(60),
        "every accepted event delivered",
        || async { accepted.is_subset(&receiver.distinct_ids()).then_some(()) },
    )
    .await?;
    println!(
        "every accepted event delivered {:.1} s after the log came back",
        restarted_at.elapsed().as_secs_f64()
    );
    let pool = api.postgres().await?;
    let ids: Vec<String> = accepted.iter().cloned().collect();
    let all_shown = || async { (events_delivered(&pool, &ids).await? == ids.len()).then_some(()) };
    let in_time = wait_until(
        PROJECTED_WITHIN.saturating_sub(restarted_at.elapsed()),
        "the read model to show every accepted event delivered",
        all_shown,
    )
    .await;
    if in_time.is_err() {
        // What is missing now says where it got stuck; then see how long it takes.
        println!("{}", undelivered_report(&pool, &ids).await);
        wait_until(
            Duration::from_secs(60),
            "the read model to show every accepted event delivered",
            all_shown,
        )
        .await?;
    }
    let projected = restarted_at.elapsed();
    println!(
        "every one of {} accepted events delivered and projected {:.1} s after the log came back",
        ids.len(),
        projected.as_secs_f64()
    );
    // The projections' readers of the log were recreated by the client with backoffs of up
    // to 10 s, each try waiting out request timeouts: 16 to 61 s. The projections now read
    // again as soon as the connection is back, and a reader stuck otherwise is replaced
    // within seconds (`reader_watch`).
    assert!(
        projected < PROJECTED_WITHIN,
        "the read model caught up {projected:?} after the log came back, not within {PROJECTED_WITHIN:?}"
    );
    ensure_running(&mut herald, "after catching up")?;
    Ok(())
}

/// For a failure's message: each event the read model does not show delivered, with its
/// status and the attempts recorded for it.
async fn undelivered_report(pool: &sqlx::PgPool, event_ids: &[String]) -> String {
    let rows: Result<Vec<(String, String, i64)>, _> = sqlx::query_as(
        "SELECT e.event_id::text, e.status, \
                (SELECT count(*) FROM attempts a WHERE a.event_id = e.event_id) \
         FROM events e WHERE e.event_id::text = ANY($1) AND e.status <> 'delivered'",
    )
    .bind(event_ids)
    .fetch_all(pool)
    .await;
    match rows {
        Ok(rows) => {
            let behind = rows.len();
            let delivered = events_delivered(pool, event_ids).await.unwrap_or(0);
            let listed: Vec<String> = rows
                .into_iter()
                .map(|(id, status, attempts)| format!("{id}: {status}, {attempts} attempts"))
                .collect();
            format!(
                "of {} events, {delivered} shown delivered, {} not in the read model at all, \
                 {behind} shown otherwise: {listed:?}",
                event_ids.len(),
                event_ids.len().saturating_sub(delivered + behind),
            )
        }
        Err(error) => format!("cannot read the read model: {error}"),
    }
}
