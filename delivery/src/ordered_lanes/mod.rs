//! Ordered endpoints: one delivery at a time, in the order the events were accepted.
//!
//! Each ordered endpoint has a *lane*: a reader of its tenant's events in log order that
//! delivers the events routed to the endpoint one after the other, retrying the one at its
//! head until it reaches a final outcome before it looks at the next. Because the lane reads
//! the log itself, ingest order is the log's order, whatever the number of delivery
//! processes, and no retry can overtake or race a newer delivery.
//!
//! Where a lane stands (the last event it finished, the attempt and due time of the one in
//! progress) is kept in Postgres (`ordered_lanes`), so no retry timer lives only in memory. A
//! lease there gives each lane to exactly one process at a time; a process renews its leases
//! every second and every write is fenced by the lease, so when a process dies another one
//! takes its lanes over once their leases run out, and a process that lost a lease stops.

use crate::attempt::{AttemptRunner, DeliveryJob, JobOutcome};
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_schemas::{EndpointId, LogMessage, Namespace, TenantId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often leases are renewed and new ordered endpoints picked up.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a lease lasts beyond the longest attempt: a lane only starts an attempt while
/// its lease has at least the request timeout left, so an attempt always ends before the
/// lease could pass to another process. A dead process's lanes wait this plus the timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How far before an endpoint's creation its lane starts reading, for clock differences
/// between the process that created it and those that accepted its first events.
const CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(60);
/// Pause after a failure to record an attempt or to reach the log or database.
const BACKOFF: Duration = Duration::from_secs(1);

/// A lane as claimed from `ordered_lanes`.
#[derive(Clone, Debug, sqlx::FromRow)]
struct LaneState {
    endpoint_id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    endpoint_created_at: DateTime<Utc>,
    delivered_through: i64,
    head_sequence: Option<i64>,
    head_attempt_number: Option<i32>,
    head_due_at: Option<DateTime<Utc>>,
}

/// This process's lanes after a renewal, and how many more than its share it holds.
struct Claimed {
    lanes: Vec<LaneState>,
    over_share: usize,
}

/// The lane's write was refused: another process holds it now, or this one is stopping.
struct LaneLost;

pub struct OrderedLanes {
    pub runner: Arc<AttemptRunner>,
    pub pool: PgPool,
    pub log_stream: jetstream::stream::Stream,
    pub namespace: Namespace,
    /// Woken when an ordered endpoint is created, so its lane starts without waiting for the
    /// next renewal.
    pub endpoints_changed: Notify,
    owner: String,
    lease: Duration,
    request_timeout: Duration,
    /// When this process last renewed its leases (all lanes renew together).
    renewed_at: std::sync::Mutex<tokio::time::Instant>,
}

struct RunningLane {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl OrderedLanes {
    pub fn new(
        runner: Arc<AttemptRunner>,
        pool: PgPool,
        log_stream: jetstream::stream::Stream,
        namespace: Namespace,
        request_timeout: Duration,
    ) -> Self {
        Self {
            lease: request_timeout + LEASE_MARGIN,
            request_timeout,
            renewed_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            runner,
            pool,
            log_stream,
            namespace,
            endpoints_changed: Notify::new(),
            owner: format!("delivery-{}", uuid::Uuid::now_v7()),
        }
    }

    /// Claims and runs lanes until `shutdown`; then lets each lane finish the attempt it is
    /// making (abandoning it if `hard_stop` fires) and gives the leases back at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, hard_stop: CancellationToken) {
        let mut lanes: HashMap<EndpointId, RunningLane> = HashMap::new();
        // Lanes over this process's share, stopping; their leases are given back once the
        // lane has stopped (and renewed meanwhile, so nobody else starts them too early).
        let mut handing_over: HashMap<EndpointId, RunningLane> = HashMap::new();
        loop {
            let attempted_at = tokio::time::Instant::now();
            match self.claim().await {
                Ok(Claimed {
                    lanes: claimed,
                    over_share,
                }) => {
                    if let Ok(mut renewed_at) = self.renewed_at.lock() {
                        *renewed_at = attempted_at;
                    }
                    let held: std::collections::HashSet<EndpointId> = claimed
                        .iter()
                        .map(|lane| EndpointId(lane.endpoint_id))
                        .collect();
                    lanes.retain(|endpoint_id, lane| {
                        let keep = held.contains(endpoint_id) && !lane.task.is_finished();
                        if !keep {
                            lane.stop.cancel();
                        }
                        keep
                    });
                    if handing_over.is_empty() && over_share > 0 {
                        let extra: Vec<EndpointId> =
                            lanes.keys().take(over_share).copied().collect();
                        for endpoint_id in extra {
                            if let Some(lane) = lanes.remove(&endpoint_id) {
                                lane.stop.cancel();
                                handing_over.insert(endpoint_id, lane);
                            }
                        }
                    }
                    for state in claimed {
                        let endpoint_id = EndpointId(state.endpoint_id);
                        if handing_over.contains_key(&endpoint_id) {
                            continue;
                        }
                        lanes.entry(endpoint_id).or_insert_with(|| {
                            let stop = shutdown.child_token();
                            let span = tracing::info_span!(
                                "ordered_lane",
                                tenant_id = %state.tenant_id,
                                endpoint_id = %endpoint_id,
                            );
                            let task = tokio::spawn(
                                self.clone()
                                    .run_lane(state, stop.clone(), hard_stop.clone())
                                    .instrument(span),
                            );
                            RunningLane { stop, task }
                        });
                    }
                    // Only after the spawning above: this round's `claimed` still lists the
                    // lanes given back now, and they must not start again here.
                    self.hand_over_stopped(&mut handing_over).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew ordered lane leases");
                    // Past its lease another process may be running the lane: stop ours.
                    if self.lease_left() < RENEW_EVERY * 2 {
                        for (_, lane) in lanes.drain() {
                            lane.stop.cancel();
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RENEW_EVERY) => {}
                () = self.endpoints_changed.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
        for (_, lane) in lanes.drain().chain(handing_over.drain()) {
            lane.stop.cancel();
            let _ = lane.task.await;
        }
        let released = sqlx::query(
            "WITH gone AS (DELETE FROM delivery_processes WHERE owner = $1) \
             UPDATE ordered_lanes SET owner = NULL, leased_until = NULL WHERE owner = $1",
        )
        .bind(&self.owner)
        .execute(&self.pool)
        .await;
        if let Err(error) = released {
            tracing::warn!(%error, "ordered lane leases not released; they expire in {:?}", self.lease);
        }
    }

    /// Gives back the leases of handed-over lanes that have stopped.
    async fn hand_over_stopped(&self, handing_over: &mut HashMap<EndpointId, RunningLane>) {
        let stopped: Vec<uuid::Uuid> = handing_over
            .iter()
            .filter(|(_, lane)| lane.task.is_finished())
            .map(|(endpoint_id, _)| endpoint_id.as_uuid())
            .collect();
        if stopped.is_empty() {
            return;
        }
        let released = sqlx::query(
            "UPDATE ordered_lanes SET owner = NULL, leased_until = NULL \
             WHERE endpoint_id = ANY($1) AND owner = $2",
        )
        .bind(&stopped)
        .bind(&self.owner)
        .execute(&self.pool)
        .await;
        match released {
            Ok(_) => {
                tracing::info!(
                    lanes = stopped.len(),
                    "ordered lanes handed over to another process"
                );
                for endpoint_id in stopped {
                    handing_over.remove(&EndpointId(endpoint_id));
                }
            }
            Err(error) => tracing::warn!(%error, "ordered lanes not handed over yet"),
        }
    }

    /// Announces this process, creates lanes for new ordered endpoints, renews this process's
    /// leases and takes lanes nobody holds, up to an even share among the live processes.
    async fn claim(&self) -> Result<Claimed, sqlx::Error> {
        let lease_ms = self.lease.as_millis() as f64;
        let (live, lanes): (i64, i64) = sqlx::query_as(
            "WITH beat AS ( \
               INSERT INTO delivery_processes (owner, seen_at) VALUES ($1, now()) \
               ON CONFLICT (owner) DO UPDATE SET seen_at = now()), \
             swept AS ( \
               DELETE FROM delivery_processes WHERE seen_at < now() - interval '1 day'), \
             ensured AS ( \
               INSERT INTO ordered_lanes (endpoint_id) \
               SELECT endpoint_id FROM endpoints WHERE ordered ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT (SELECT count(*) FROM delivery_processes \
                       WHERE owner <> $1 AND seen_at > now() - $2 * interval '1 millisecond') + 1, \
                    (SELECT count(*) FROM ordered_lanes) + (SELECT count(*) FROM ensured)",
        )
        .bind(&self.owner)
        .bind(lease_ms)
        .fetch_one(&self.pool)
        .await?;
        let share = (lanes + live - 1) / live.max(1);
        let held = sqlx::query(
            "UPDATE ordered_lanes SET leased_until = now() + $2 * interval '1 millisecond' \
             WHERE owner = $1",
        )
        .bind(&self.owner)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?
        .rows_affected() as i64;
        if held < share {
            sqlx::query(
                "UPDATE ordered_lanes SET owner = $1, leased_until = now() + $2 * interval '1 millisecond' \
                 WHERE endpoint_id IN ( \
                   SELECT endpoint_id FROM ordered_lanes \
                   WHERE owner IS NULL OR leased_until < now() \
                   ORDER BY endpoint_id LIMIT $3 FOR UPDATE SKIP LOCKED)",
            )
            .bind(&self.owner)
            .bind(lease_ms)
            .bind(share - held)
            .execute(&self.pool)
            .await?;
        }
        let lanes: Vec<LaneState> = sqlx::query_as(
            "SELECT l.endpoint_id, e.tenant_id, e.created_at AS endpoint_created_at, \
               l.delivered_through, l.head_sequence, l.head_attempt_number, l.head_due_at \
             FROM ordered_lanes l JOIN endpoints e ON e.endpoint_id = l.endpoint_id \
             WHERE l.owner = $1",
        )
        .bind(&self.owner)
        .fetch_all(&self.pool)
        .await?;
        let over_share = (lanes.len() as i64 - share).max(0) as usize;
        Ok(Claimed { lanes, over_share })
    }

    async fn run_lane(
        self: Arc<Self>,
        mut state: LaneState,
        stop: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let endpoint_id = EndpointId(state.endpoint_id);
        let subject = self.namespace.event_subject(TenantId(state.tenant_id));
        tracing::debug!(delivered_through = state.delivered_through, "lane started");
        while !stop.is_cancelled() {
            let deliver_policy = if state.delivered_through > 0 {
                DeliverPolicy::ByStartSequence {
                    start_sequence: state.delivered_through as u64 + 1,
                }
            } else {
                let start = state.endpoint_created_at - CLOCK_SLACK;
                DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp(start.timestamp())
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                }
            };
            let mut messages = match self.read_events(&subject, deliver_policy).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "lane cannot read the log");
                    pause(&stop, BACKOFF).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = stop.cancelled() => return,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "lane's log reading interrupted");
                        break;
                    }
                    None => break,
                };
                let Ok(info) = message.info() else { continue };
                let sequence = info.stream_sequence as i64;
                if sequence <= state.delivered_through {
                    continue;
                }
                let event = match LogMessage::decode(&message.payload) {
                    Ok(LogMessage::EventAccepted(event)) => event,
                    _ => continue,
                };
                if !event.endpoint_ids.contains(&endpoint_id) {
                    continue;
                }
                let delivered = self
                    .deliver(&mut state, sequence, Arc::new(event), &stop, &hard_stop)
                    .await;
                if delivered.is_err() {
                    tracing::debug!("lane stopped");
                    return;
                }
            }
        }
    }

    /// Makes the delivery at the lane's head until it reaches a final outcome.
    async fn deliver(
        &self,
        state: &mut LaneState,
        sequence: i64,
        event: Arc<herald_schemas::EventAccepted>,
        stop: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Result<(), LaneLost> {
        let (mut attempt_number, mut due_at) = match state.head_sequence {
            Some(head) if head == sequence => (
                state.head_attempt_number.unwrap_or(1).max(1) as u32,
                state.head_due_at.unwrap_or(event.accepted_at),
            ),
            _ => (1, event.accepted_at),
        };
        loop {
            let wait = (due_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return Err(LaneLost),
                }
            }
            // Never start an attempt that could outlive the lease (renewals failing).
            while self.lease_left() < self.request_timeout + RENEW_EVERY {
                tracing::warn!("lane lease not renewed; holding the next attempt");
                pause(stop, RENEW_EVERY).await;
                if stop.is_cancelled() {
                    return Err(LaneLost);
                }
            }
            let job = DeliveryJob {
                event: event.clone(),
                event_sequence: sequence as u64,
                endpoint_id: EndpointId(state.endpoint_id),
                attempt_number,
                scheduled_at: due_at,
                in_lane: true,
            };
            let outcome = tokio::select! {
                outcome = self.runner.run(job) => outcome,
                () = hard_stop.cancelled() => return Err(LaneLost),
            };
            match outcome {
                Ok(JobOutcome::Attempted {
                    next_attempt_at: Some(next),
                    ..
                }) => {
                    attempt_number += 1;
                    due_at = next;
                }
                Ok(JobOutcome::Deferred { until, .. }) => due_at = until,
                Ok(JobOutcome::Attempted { .. } | JobOutcome::LeftToLane) => {
                    self.save(state, sequence, None, stop).await?;
                    state.delivered_through = sequence;
                    state.head_sequence = None;
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, "ordered attempt not recorded; trying again");
                    pause(stop, BACKOFF).await;
                    if stop.is_cancelled() {
                        return Err(LaneLost);
                    }
                    continue;
                }
            }
            self.save(state, sequence, Some((attempt_number, due_at)), stop)
                .await?;
            state.head_sequence = Some(sequence);
            state.head_attempt_number = Some(attempt_number as i32);
            state.head_due_at = Some(due_at);
        }
    }

    /// Records where the lane stands: `head` is the next attempt of the delivery at
    /// `sequence`, or `None` when that delivery is finished. Fenced by the lease.
    async fn save(
        &self,
        state: &LaneState,
        sequence: i64,
        head: Option<(u32, DateTime<Utc>)>,
        stop: &CancellationToken,
    ) -> Result<(), LaneLost> {
        loop {
            let saved = match head {
                Some((attempt_number, due_at)) => sqlx::query(
                    "UPDATE ordered_lanes SET head_sequence = $3, head_attempt_number = $4, \
                       head_due_at = $5 WHERE endpoint_id = $1 AND owner = $2",
                )
                .bind(state.endpoint_id)
                .bind(&self.owner)
                .bind(sequence)
                .bind(attempt_number as i32)
                .bind(due_at),
                None => sqlx::query(
                    "UPDATE ordered_lanes SET delivered_through = $3, head_sequence = NULL, \
                       head_attempt_number = NULL, head_due_at = NULL \
                     WHERE endpoint_id = $1 AND owner = $2",
                )
                .bind(state.endpoint_id)
                .bind(&self.owner)
                .bind(sequence),
            }
            .execute(&self.pool)
            .await;
            match saved {
                Ok(result) if result.rows_affected() == 1 => return Ok(()),
                Ok(_) => {
                    tracing::warn!("ordered lane taken over by another process; stopping");
                    return Err(LaneLost);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not save the ordered lane's position");
                    pause(stop, BACKOFF).await;
                    if stop.is_cancelled() {
                        return Err(LaneLost);
                    }
                }
            }
        }
    }
}

impl OrderedLanes {
    /// The tenant's events in log order, from `deliver_policy` on.
    async fn read_events(
        &self,
        subject: &str,
        deliver_policy: DeliverPolicy,
    ) -> Result<async_nats::jetstream::consumer::pull::Ordered, String> {
        let consumer = self
            .log_stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| error.to_string())?;
        consumer.messages().await.map_err(|error| error.to_string())
    }

    /// How long this process's leases still run (they were set to `lease` at the renewal,
    /// counted from just before it was sent).
    fn lease_left(&self) -> Duration {
        let renewed_at = self
            .renewed_at
            .lock()
            .map(|renewed_at| *renewed_at)
            .unwrap_or_else(|_| tokio::time::Instant::now() - self.lease);
        self.lease.saturating_sub(renewed_at.elapsed())
    }
}

async fn pause(stop: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = stop.cancelled() => {}
    }
}
