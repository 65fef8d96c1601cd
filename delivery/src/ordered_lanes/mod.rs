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
//!
//! `lane` is one lane, `leases` the Postgres side; this module runs the lanes this process
//! holds.

mod lane;
mod leases;

use crate::attempt::AttemptRunner;
use async_nats::jetstream;
use herald_schemas::{EndpointId, Namespace};
use lane::Lane;
use leases::{Claimed, LaneLeases};
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
/// Pause after a failure to record an attempt or to reach the log or database.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct OrderedLanes {
    runner: Arc<AttemptRunner>,
    leases: LaneLeases,
    log_stream: jetstream::stream::Stream,
    namespace: Namespace,
    /// Woken when an ordered endpoint is created, so its lane starts without waiting for the
    /// next renewal.
    endpoints_changed: Notify,
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
            leases: LaneLeases::new(pool, request_timeout + LEASE_MARGIN),
            request_timeout,
            renewed_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            runner,
            log_stream,
            namespace,
            endpoints_changed: Notify::new(),
        }
    }

    /// An ordered endpoint was created: start its lane now rather than at the next renewal.
    pub fn endpoint_created(&self) {
        self.endpoints_changed.notify_one();
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
            match self.leases.claim().await {
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
                            let lane = Lane {
                                lanes: self.clone(),
                                state,
                            };
                            let task = tokio::spawn(
                                lane.run(stop.clone(), hard_stop.clone()).instrument(span),
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
        if let Err(error) = self.leases.give_back_all().await {
            let lease = self.leases.lease();
            tracing::warn!(%error, "ordered lane leases not released; they expire in {lease:?}");
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
        match self.leases.give_back(&stopped).await {
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

    /// How long this process's leases still run (they were set to the lease's length at the
    /// renewal, counted from just before it was sent).
    fn lease_left(&self) -> Duration {
        let lease = self.leases.lease();
        let renewed_at = self
            .renewed_at
            .lock()
            .map(|renewed_at| *renewed_at)
            .unwrap_or_else(|_| tokio::time::Instant::now() - lease);
        lease.saturating_sub(renewed_at.elapsed())
    }
}
