//! A busy endpoint's backlog waits in the log, on a subject of its own, and is taken out at
//! the pace the endpoint answers (ADR 0026).
//!
//! A delivery to an endpoint that already has a queue of its own in memory (see
//! `endpoint_concurrency`) is not deferred to a moment estimated from the endpoint's pace:
//! an estimate made while the machine is short of CPU commits the backlog to come back at that
//! slow pace long after the endpoint could take it, and a delivery that comes back while the
//! endpoint is still busy is deferred again, at a cost that makes the shortage worse. Such a
//! delivery is appended to `<ns>.retries.busy.<endpoint_id>` instead, and one drainer per
//! endpoint with a backlog takes it out whenever the endpoint has room to queue it: as fast as
//! the endpoint answers, and never deferred again for being busy.
//!
//! Drainers live as long as their backlog: one whose backlog stays empty deletes its consumer,
//! so the server holds consumers only for endpoints busy now. A look at the stream's subjects
//! every few seconds starts a drainer for any backlog that has none (one left by a process
//! that stopped, or appended to while its drainer was closing).

use crate::retry_worker::RetryWorker;
use crate::stopping::{pause, HAND_BACK_DELAY};
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::{StreamExt, TryStreamExt};
use herald_log::DurableConsumer;
use herald_schemas::{EndpointId, LogMessage};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the stream's subjects are looked at for backlogs without a drainer.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How long a pull waits for the backlog's next deliveries.
const PULL_WAIT: Duration = Duration::from_millis(500);
/// Consecutive empty pulls, with nothing in flight, before a drainer closes.
const EMPTY_PULLS_BEFORE_CLOSING: u32 = 6;
/// Most deliveries taken in one pull.
const MAX_PULL: usize = 256;
const CONSUMER_PREFIX: &str = "busy_";

/// Endpoints whose backlog has a drainer (or is about to), shared between the deliveries that
/// append to backlogs and the drainers.
#[derive(Clone)]
pub struct BacklogsDrained {
    drained: Arc<Mutex<HashSet<EndpointId>>>,
    start: mpsc::UnboundedSender<EndpointId>,
}

impl BacklogsDrained {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<EndpointId>) {
        let (start, to_start) = mpsc::unbounded_channel();
        let drained = Self {
            drained: Default::default(),
            start,
        };
        (drained, to_start)
    }

    /// Called once a delivery is in `endpoint_id`'s backlog: starts its drainer if it has none.
    pub fn appended(&self, endpoint_id: EndpointId) {
        if self.claim(endpoint_id) {
            // The receiver is gone only once the service stops; the look at the next start
            // finds the backlog.
            let _ = self.start.send(endpoint_id);
        }
    }

    /// Whether the caller is now the one to start `endpoint_id`'s drainer.
    fn claim(&self, endpoint_id: EndpointId) -> bool {
        self.lock().insert(endpoint_id)
    }

    fn release(&self, endpoint_id: EndpointId) {
        self.lock().remove(&endpoint_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<EndpointId>> {
        self.drained
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct BusyBacklogs {
    pub worker: Arc<RetryWorker>,
    pub drained: BacklogsDrained,
}

impl BusyBacklogs {
    /// Starts a drainer for every backlog that needs one until `shutdown`: those appended to
    /// by this process, and those the stream holds without one (looked for every
    /// [`LOOK_EVERY`]). Deliveries taken out are tracked by `tracker` and handed back if
    /// `hard_stop` fires before they finish.
    pub async fn run(
        self: Arc<Self>,
        mut to_start: mpsc::UnboundedReceiver<EndpointId>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let mut drainers = JoinSet::new();
        let start = |endpoint_id: EndpointId, drainers: &mut JoinSet<()>| {
            drainers.spawn(self.clone().drain(
                endpoint_id,
                tracker.clone(),
                shutdown.clone(),
                hard_stop.clone(),
            ));
        };
        // Consumers left by a process that stopped: their drainer deletes them once empty.
        for endpoint_id in self.consumers_left().await {
            if self.drained.claim(endpoint_id) {
                start(endpoint_id, &mut drainers);
            }
        }
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(endpoint_id) = to_start.recv() => start(endpoint_id, &mut drainers),
                _ = look.tick() => {
                    for endpoint_id in self.backlogs_in_the_stream().await {
                        if self.drained.claim(endpoint_id) {
                            start(endpoint_id, &mut drainers);
                        }
                    }
                }
                Some(_) = drainers.join_next() => {}
                () = shutdown.cancelled() => break,
            }
        }
        while drainers.join_next().await.is_some() {}
    }

    async fn consumers_left(&self) -> Vec<EndpointId> {
        let names: Result<Vec<String>, _> = self
            .worker
            .retry_stream
            .consumer_names()
            .try_collect()
            .await;
        match names {
            Ok(names) => names
                .iter()
                .filter_map(|name| name.strip_prefix(CONSUMER_PREFIX)?.parse().ok())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list the busy backlogs' consumers");
                Vec::new()
            }
        }
    }

    /// Endpoints whose backlog subject holds messages.
    async fn backlogs_in_the_stream(&self) -> Vec<EndpointId> {
        let filter = self.worker.deliveries.namespace().busy_backlogs_filter();
        let subjects = match self.worker.retry_stream.info_with_subjects(&filter).await {
            Ok(subjects) => subjects,
            Err(error) => {
                tracing::warn!(%error, "cannot look for busy backlogs");
                return Vec::new();
            }
        };
        let subjects: Result<Vec<(String, usize)>, _> = subjects.try_collect().await;
        match subjects {
            Ok(subjects) => subjects
                .iter()
                .filter(|(_, count)| *count > 0)
                .filter_map(|(subject, _)| subject.rsplit('.').next()?.parse().ok())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot look for busy backlogs");
                Vec::new()
            }
        }
    }

    fn consumer(&self, endpoint_id: EndpointId) -> DurableConsumer {
        let room = concurrency_of(&self.worker).backlog_room(endpoint_id);
        DurableConsumer {
            name: format!("{CONSUMER_PREFIX}{endpoint_id}"),
            filter_subject: self
                .worker
                .deliveries
                .namespace()
                .busy_backlog_subject(endpoint_id),
            ack_wait: self.worker.ack_wait,
            // Room is at most four times the endpoint's slots; twice that leaves room for
            // messages handed back on a hard stop.
            max_ack_pending: (room * 8) as i64,
        }
    }

    /// Takes `endpoint_id`'s backlog out of the log as fast as the endpoint has room for it,
    /// until `shutdown` or until the backlog stays empty.
    #[tracing::instrument(level = "debug", skip_all, fields(%endpoint_id))]
    async fn drain(
        self: Arc<Self>,
        endpoint_id: EndpointId,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let spec = self.consumer(endpoint_id);
        let in_flight = Arc::new(InFlight::default());
        let mut consumer: Option<PullConsumer> = None;
        let mut empty_pulls = 0;
        while !shutdown.is_cancelled() {
            let Some(open) = consumer.as_ref() else {
                match spec
                    .open(&self.worker.retry_stream, DeliverPolicy::All)
                    .await
                {
                    Ok(opened) => consumer = Some(opened),
                    Err(error) => {
                        tracing::warn!(%error, "cannot open a busy backlog's consumer");
                        pause(&shutdown, Duration::from_secs(1)).await;
                    }
                }
                continue;
            };
            let room = concurrency_of(&self.worker)
                .backlog_room(endpoint_id)
                .saturating_sub(in_flight.count());
            if room == 0 {
                tokio::select! {
                    () = in_flight.finished.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
            let batch = open
                .batch()
                .max_messages(room.min(MAX_PULL))
                .expires(PULL_WAIT)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "busy backlog pull failed");
                    if herald_log::is_lost(open).await {
                        consumer = None;
                    } else {
                        pause(&shutdown, Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let mut taken = 0;
            while let Some(message) = batch.next().await {
                let Ok(message) = message else { break };
                taken += 1;
                in_flight.started();
                let (worker, in_flight, hard_stop) =
                    (self.worker.clone(), in_flight.clone(), hard_stop.clone());
                tracker.spawn(async move {
                    take(&worker, message, &hard_stop).await;
                    in_flight.done();
                });
            }
            if taken > 0 || in_flight.count() > 0 {
                empty_pulls = 0;
                continue;
            }
            empty_pulls += 1;
            if empty_pulls >= EMPTY_PULLS_BEFORE_CLOSING && self.close(endpoint_id, open).await {
                return;
            }
        }
    }

    /// Deletes the drainer's consumer if its backlog is empty. The endpoint is released first,
    /// so that a delivery appended from then on starts a drainer of its own; one appended
    /// between the check and the deletion is found by the next look at the stream.
    async fn close(&self, endpoint_id: EndpointId, consumer: &PullConsumer) -> bool {
        self.drained.release(endpoint_id);
        let empty = match consumer.get_info().await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        };
        if !empty {
            // Go on draining, unless a new drainer was started meanwhile.
            return !self.drained.claim(endpoint_id);
        }
        let name = format!("{CONSUMER_PREFIX}{endpoint_id}");
        if let Err(error) = self.worker.retry_stream.delete_consumer(&name).await {
            tracing::debug!(%error, "busy backlog consumer not deleted");
        }
        true
    }
}

fn concurrency_of(worker: &RetryWorker) -> &crate::endpoint_concurrency::EndpointConcurrency {
    worker.deliveries.concurrency()
}

/// Attempts one delivery of the backlog and acknowledges it once its record is in the log.
async fn take(worker: &RetryWorker, message: jetstream::Message, hard_stop: &CancellationToken) {
    let retry = match LogMessage::decode(&message.payload) {
        Ok(LogMessage::RetryDue(retry)) => retry,
        other => {
            tracing::error!(result = ?other.map(|m| m.type_name()), "not a retry; dropped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let attempted = async {
        let Some(job) = worker.job(&retry).await else {
            return false;
        };
        let event_id = job.event.event_id;
        match worker.deliveries.run_from_backlog(job).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%event_id, %error, "attempt not recorded; will try again");
                false
            }
        }
    };
    tokio::select! {
        attempted = attempted => match attempted {
            true => worker.deliveries.publisher().ack_grouped(message).await,
            false => herald_log::hand_back::hand_back(message, Duration::from_secs(1)),
        },
        () = hard_stop.cancelled() => {
            let _ = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
        }
    }
}

/// Deliveries a drainer has taken out and not finished.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    finished: Notify,
}

impl InFlight {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn started(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn done(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.finished.notify_one();
    }
}
