//! Load for tests that kill things, and the checks that must hold afterwards.
//!
//! The load is what a careful producer does: many clients, each event sent with an
//! idempotency key and the request repeated with the same key until it is answered 202
//! (whatever went wrong before: a refused connection, a 503, a reset). Every event that got a
//! 202 is then checked end to end: delivered, once in the log, once in each read model, with
//! every attempt the log holds projected exactly once.

use crate::{wait_until, Api, Tenant};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the clients saw.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Idempotency key → the event id its 202 named.
    pub accepted: BTreeMap<String, String>,
    /// Answers other than 202, by status (0: no answer: refused, reset, timed out).
    pub refusals: BTreeMap<u16, usize>,
    /// Answers that break the contract (a 5xx other than a 503 problem, a repeat answered
    /// with another event id, …).
    pub violations: Vec<String>,
}

/// Progress of a running load, readable while it runs.
#[derive(Default)]
pub struct Progress {
    pub accepted: AtomicUsize,
    pub refused: AtomicUsize,
}

/// How much load, and for how long at most.
#[derive(Clone, Copy, Debug)]
pub struct LoadShape {
    pub events: usize,
    pub clients: usize,
    /// Events offered per second, all clients together (a client whose event is refused
    /// repeats it and falls behind; it does not send faster to catch up).
    pub per_second: f64,
    pub deadline: Duration,
}

/// Sends `shape.events` events from `shape.clients` concurrent clients and returns once each
/// was answered 202 (or the deadline passed: then the missing ones are violations).
pub async fn send_with_repeats(
    api: Arc<Api>,
    tenant: Arc<Tenant>,
    shape: LoadShape,
    progress: Arc<Progress>,
) -> LoadOutcome {
    let LoadShape {
        events,
        clients,
        per_second,
        deadline,
    } = shape;
    let every = Duration::from_secs_f64(clients as f64 / per_second.max(0.001));
    let outcome = Arc::new(Mutex::new(LoadOutcome::default()));
    let end = Instant::now() + deadline;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (api, tenant, outcome, progress) = (
            api.clone(),
            tenant.clone(),
            outcome.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut pace = tokio::time::interval(every);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for index in (client..events).step_by(clients) {
                pace.tick().await;
                send_until_accepted(&api, &tenant, index, end, &outcome, &progress).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut outcome = std::mem::take(&mut *outcome.lock().expect("lock"));
    if outcome.accepted.len() < events {
        outcome.violations.push(format!(
            "only {} of {events} events were accepted within {deadline:?}",
            outcome.accepted.len()
        ));
    }
    outcome
}

async fn send_until_accepted(
    api: &Api,
    tenant: &Tenant,
    index: usize,
    end: Instant,
    outcome: &Mutex<LoadOutcome>,
    progress: &Progress,
) {
    let key = format!("kill-{index}");
    let body =
        json!({ "type": "kill.test", "payload": { "index": index }, "idempotency_key": key });
    let mut pause = Duration::from_millis(20);
    // Every tenth event is sent once more after its 202: the repeat must name the same event.
    let mut confirmations_left = usize::from(index.is_multiple_of(10));
    let mut accepted_as: Option<String> = None;
    while Instant::now() < end {
        let (status, answer) = post(api, tenant, &body).await;
        if status == 202 {
            let event_id = answer["event_id"].as_str().unwrap_or_default().to_owned();
            let mut outcome = outcome.lock().expect("lock");
            match &accepted_as {
                Some(first) if *first != event_id => outcome.violations.push(format!(
                    "key {key} was answered 202 with {first} and then with {event_id}"
                )),
                Some(_) => {}
                None => {
                    outcome.accepted.insert(key.clone(), event_id.clone());
                    progress.accepted.fetch_add(1, Ordering::Relaxed);
                    accepted_as = Some(event_id);
                }
            }
            if confirmations_left == 0 {
                return;
            }
            confirmations_left -= 1;
            continue;
        }
        {
            let mut outcome = outcome.lock().expect("lock");
            *outcome.refusals.entry(status).or_default() += 1;
            let problem = answer["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty());
            if status >= 500 && !(status == 503 && problem) {
                outcome
                    .violations
                    .push(format!("key {key}: answered {status} {answer}"));
            }
        }
        progress.refused.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    if accepted_as.is_none() {
        outcome
            .lock()
            .expect("lock")
            .violations
            .push(format!("key {key} never accepted"));
    }
}

async fn post(api: &Api, tenant: &Tenant, body: &Value) -> (u16, Value) {
    let sent = api
        .http
        .post(api.url("/v1/events"))
        .bearer_auth(&tenant.api_key)
        .timeout(Duration::from_secs(10))
        .json(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// The log's own account: every accepted event and every attempt record, by id.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Event id → how many `event.accepted.v1` messages carry it.
    pub events: HashMap<String, usize>,
    /// Attempt id → how many `attempt.recorded` messages (any version) carry it.
    pub attempts: HashMap<String, usize>,
    /// Event id → the stream sequence of its (last) `event.accepted.v1` message.
    pub event_sequences: HashMap<String, u64>,
}

/// Reads the whole log stream of `api`'s Herald.
pub async fn read_log(api: &Api) -> Result<LogContents> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;
    let client = async_nats::connect(&api.herald.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream(api.namespace()?.log_stream()).await?;
    let last_sequence = stream.info().await?.state.last_sequence;
    let mut contents = LogContents::default();
    if last_sequence == 0 {
        return Ok(contents);
    }
    let mut messages = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?
        .messages()
        .await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("the log stopped answering while being read")?
            .context("the log's message stream ended")??;
        let sequence = message.info().map_err(anyhow::Error::msg)?.stream_sequence;
        let decoded: Value = serde_json::from_slice(&message.payload)?;
        let id = |field: &str| {
            decoded["data"][field]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        match decoded["type"].as_str() {
            Some("event.accepted.v1") => {
                *contents.events.entry(id("event_id")).or_default() += 1;
                contents.event_sequences.insert(id("event_id"), sequence);
            }
            Some("attempt.recorded.v1" | "attempt.recorded.v2") => {
                *contents.attempts.entry(id("attempt_id")).or_default() += 1
            }
            _ => {}
        }
        if sequence >= last_sequence {
            return Ok(contents);
        }
    }
}

/// A tenant's events in the Postgres read model, and those not finished.
struct ReadModelCounts {
    events: i64,
    /// Deliveries not succeeded.
    unfinished: i64,
    /// Events not delivered.
    undelivered: i64,
}

impl ReadModelCounts {
    async fn of(pool: &sqlx::PgPool, tenant_id: uuid::Uuid) -> Result<Self> {
        let (events, unfinished, undelivered) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events WHERE tenant_id = $1), \
                    (SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND status <> 'succeeded'), \
                    (SELECT count(*) FROM events WHERE tenant_id = $1 AND status <> 'delivered')",
        )
        .bind(tenant_id)
        .fetch_one(pool)
        .await?;
        Ok(Self {
            events,
            unfinished,
            undelivered,
        })
    }

    fn all_done(&self) -> bool {
        self.unfinished == 0 && self.undelivered == 0
    }
}

/// Waits until every accepted event was delivered and every delivery has ended, then checks
/// that the log and both read models agree exactly. Returns the log's contents.
pub async fn check_nothing_lost(
    api: &Api,
    tenant: &Tenant,
    outcome: &LoadOutcome,
    received: impl Fn() -> HashSet<String>,
    within: Duration,
) -> Result<LogContents> {
    ensure!(
        outcome.violations.is_empty(),
        "the clients saw contract violations: {:#?}",
        outcome.violations
    );
    let accepted: HashSet<&String> = outcome.accepted.values().collect();
    ensure!(
        accepted.len() == outcome.accepted.len(),
        "two keys were answered with the same event id"
    );

    let delivered = wait_until(within, "every accepted event delivered", || async {
        let received = received();
        let missing = accepted
            .iter()
            .filter(|id| !received.contains(**id))
            .count();
        (missing == 0).then_some(received)
    })
    .await
    .with_context(|| {
        let received = received();
        let missing: Vec<_> = accepted
            .iter()
            .filter(|id| !received.contains(**id))
            .take(10)
            .collect();
        format!("accepted events never delivered (first ten): {missing:?}")
    })?;
    let phantoms: Vec<_> = delivered
        .iter()
        .filter(|id| !accepted.contains(id))
        .take(10)
        .collect();
    ensure!(
        phantoms.is_empty(),
        "delivered events nobody was told were accepted: {phantoms:?}"
    );

    let pool = api.postgres().await?;
    let tenant_id = uuid::Uuid::parse_str(&tenant.tenant_id)?;
    // Every delivery ends (the receiver fails one request in ten; the retry policy allows
    // enough attempts), so none may be left waiting. The last events may be projected after
    // they were delivered: the wait is also for as many events as were accepted.
    let _ = wait_until(
        within,
        "every delivery succeeded and every event delivered",
        || async {
            let counts = ReadModelCounts::of(&pool, tenant_id).await.ok()?;
            (counts.events as usize >= accepted.len() && counts.all_done()).then_some(())
        },
    )
    .await;

    let events: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT event_id FROM events WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&pool)
            .await?;
    let stored: HashSet<String> = events.iter().map(|(id,)| id.to_string()).collect();
    if stored.len() != accepted.len() || !accepted.iter().all(|id| stored.contains(*id)) {
        // Where the missing ones are in the log, and how far the projector got.
        let log = read_log(api).await.ok();
        let missing: Vec<(&str, Option<u64>)> = accepted
            .iter()
            .filter(|id| !stored.contains(**id))
            .take(10)
            .map(|id| {
                let sequence = log
                    .as_ref()
                    .and_then(|log| log.event_sequences.get(*id).copied());
                (id.as_str(), sequence)
            })
            .collect();
        let checkpoints: Vec<(String, i64)> =
            sqlx::query_as("SELECT projector, stream_sequence FROM projector_checkpoints")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        bail!(
            "Postgres holds {} events, {} were accepted; missing (event id, log sequence): \
             {missing:?}; the log holds {:?} of the events; projector checkpoints {checkpoints:?}",
            stored.len(),
            accepted.len(),
            log.map(|log| log.events.len())
        );
    }

    let counts = ReadModelCounts::of(&pool, tenant_id).await?;
    ensure!(
        counts.all_done(),
        "deliveries left unfinished (overdue or never attempted): {} deliveries not succeeded, \
         {} events not delivered",
        counts.unfinished,
        counts.undelivered
    );

    let log = wait_until(
        within,
        "both read models to hold every attempt of the log",
        || async {
            let log = read_log(api).await.ok()?;
            let (postgres_rows, postgres_distinct): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(DISTINCT attempt_id) FROM attempts WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .ok()?;
            let clickhouse = api
                .clickhouse("SELECT count(), uniqExact(attempt_id) FROM attempts")
                .await
                .ok()?;
            let log_attempts = log.attempts.len() as i64;
            let agree = postgres_rows == log_attempts
                && postgres_distinct == log_attempts
                && clickhouse == format!("{log_attempts}\t{log_attempts}");
            agree.then_some(log)
        },
    )
    .await
    .with_context(|| "the read models do not hold exactly the attempts of the log")?;

    let repeated: Vec<_> = log.events.iter().filter(|(_, count)| **count > 1).collect();
    ensure!(
        repeated.is_empty(),
        "events appended more than once: {repeated:?}"
    );
    let repeated: Vec<_> = log
        .attempts
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    ensure!(repeated.is_empty(), "attempts recorded twice: {repeated:?}");
    if log.events.len() != accepted.len() {
        bail!(
            "the log holds {} events, {} were accepted",
            log.events.len(),
            accepted.len()
        );
    }
    let attempt_ids: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT attempt_id FROM attempts WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&pool)
            .await?;
    let foreign: Vec<_> = attempt_ids
        .iter()
        .map(|(id,)| id.to_string())
        .filter(|id| !log.attempts.contains_key(id))
        .take(10)
        .collect();
    ensure!(
        foreign.is_empty(),
        "Postgres holds attempts the log does not: {foreign:?}"
    );
    Ok(log)
}
