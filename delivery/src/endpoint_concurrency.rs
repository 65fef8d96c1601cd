//! Bounds the requests in flight to each endpoint, so that one endpoint can neither take every
//! connection of the process nor be flooded; it also keeps the number of connections to a
//! receiver within the keep-alive pool, so connections are reused instead of reopened.
//!
//! A delivery waiting for a slot holds its log message unacknowledged, and the first-attempt
//! consumer stops handing out messages once too many are unacknowledged: a slow endpoint
//! whose deliveries all waited here would stall every other endpoint. So how many may wait is
//! bounded by how long they would wait: an endpoint that answers steadily may queue about a
//! second of its own measured pace in memory (at least as many deliveries as it has slots),
//! one that has not answered lately only as many as it has slots; all endpoints that have not
//! answered lately together at most a bound of the process (half the log's window), and all
//! endpoints together eight times that (memory). Past that the endpoint is *busy*: the delivery
//! joins the endpoint's backlog in the log if it has a queue of its own (`busy_backlogs`,
//! ADR 0026), or is deferred through the retry queue to when a slot should be free, estimated
//! from how long the endpoint's requests take (ADR 0024).

use herald_schemas::EndpointId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests this long are assumed before any was measured.
const ASSUMED_REQUEST: Duration = Duration::from_millis(100);
/// A deferred delivery comes back no sooner than this.
const MIN_DEFERRAL: Duration = Duration::from_millis(200);
/// How long, at the endpoint's measured pace, the deliveries waiting for it in memory may
/// take to get a slot.
const QUEUED_WAIT: Duration = Duration::from_secs(1);
/// Deliveries waiting at endpoints that answer (each for about [`QUEUED_WAIT`] at most) may
/// be this many times the bound of those waiting at endpoints that do not: their bound is
/// only one of memory.
const ANSWERING_WAIT_FACTOR: usize = 8;
/// An endpoint with no request finished for this long may queue only as many deliveries as
/// it has slots: its measured pace may be stale (it may have started hanging).
const ANSWERING_WITHIN: Duration = Duration::from_millis(100);

pub struct EndpointConcurrency {
    per_endpoint: usize,
    /// Deliveries that may wait in memory for a slot at endpoints that have not answered
    /// lately, in all; [`ANSWERING_WAIT_FACTOR`] times as many at endpoints that answer.
    waiting_in_all: usize,
    /// Deliveries waiting at endpoints that had not answered lately when they began to wait.
    waiting_unanswered: Arc<AtomicUsize>,
    /// When this was made: slots record when they were released as microseconds since.
    epoch: Instant,
    waiting: Arc<AtomicUsize>,
    endpoints: Mutex<HashMap<EndpointId, Arc<EndpointSlots>>>,
}

struct EndpointSlots {
    semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Moving average of how long a slot is held, in microseconds.
    held_micros: AtomicU64,
    /// When a slot was last given back, in microseconds since the epoch (0: never).
    released_at_micros: AtomicU64,
    /// When the last delivery deferred for being busy was told to come back.
    next_slot: Mutex<Instant>,
}

/// A slot for one request; given back when dropped.
pub struct EndpointSlot {
    _permit: OwnedSemaphorePermit,
    taken_at: Instant,
    epoch: Instant,
    slots: Arc<EndpointSlots>,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        // At least 1: 0 stands for "never measured".
        let held = (self.taken_at.elapsed().as_micros().min(u64::MAX as u128) as u64).max(1);
        let average = self.slots.held_micros.load(Ordering::Relaxed);
        // An exponential moving average over about the last eight requests.
        let updated = if average == 0 {
            held
        } else {
            average - average / 8 + held / 8
        };
        self.slots.held_micros.store(updated, Ordering::Relaxed);
        self.slots
            .released_at_micros
            .store(micros_since(self.epoch).max(1), Ordering::Relaxed);
    }
}

fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros().min(u64::MAX as u128) as u64
}

/// The endpoint is busy: try again after this long.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy {
    pub retry_in: Duration,
}

impl EndpointConcurrency {
    pub fn new(per_endpoint: usize, waiting_in_all: usize) -> Self {
        let per_endpoint = per_endpoint.max(1);
        Self {
            per_endpoint,
            waiting_in_all: waiting_in_all.max(1),
            epoch: Instant::now(),
            waiting: Arc::new(AtomicUsize::new(0)),
            waiting_unanswered: Arc::new(AtomicUsize::new(0)),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `endpoint_id`, waiting for one if few enough deliveries wait already.
    pub async fn acquire(&self, endpoint_id: EndpointId) -> Result<EndpointSlot, Busy> {
        let slots = self.slots(endpoint_id);
        if let Ok(permit) = slots.semaphore.clone().try_acquire_owned() {
            return Ok(self.slot(permit, slots));
        }
        let answering = self.answering(&slots);
        let waiting_here = slots.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting_in_all = self.waiting.fetch_add(1, Ordering::AcqRel);
        let over_bound_in_all = match answering {
            // Each waits about a second at most: only memory bounds them.
            true => waiting_in_all >= self.waiting_in_all * ANSWERING_WAIT_FACTOR,
            // Each may wait as long as a request may take: they may hold only part of the
            // log's window, so that other endpoints' events keep coming in.
            false => self.waiting_unanswered.fetch_add(1, Ordering::AcqRel) >= self.waiting_in_all,
        };
        let waiting = Waiting([
            Some(&slots.waiting),
            Some(&self.waiting),
            (!answering).then_some(&*self.waiting_unanswered),
        ]);
        if waiting_here >= self.may_wait(&slots) || over_bound_in_all {
            return Err(Busy {
                retry_in: self.next_slot(&slots),
            });
        }
        let permit = slots.semaphore.clone().acquire_owned().await;
        drop(waiting);
        match permit {
            Ok(permit) => Ok(self.slot(permit, slots)),
            Err(_) => Err(Busy {
                retry_in: MIN_DEFERRAL,
            }),
        }
    }

    /// A slot for `endpoint_id`, however long the wait (for ordered lanes, which hold one
    /// delivery per endpoint at most and must not be reordered by a deferral).
    pub async fn acquire_waiting(&self, endpoint_id: EndpointId) -> Option<EndpointSlot> {
        let slots = self.slots(endpoint_id);
        let permit = slots.semaphore.clone().acquire_owned().await.ok()?;
        Some(self.slot(permit, slots))
    }

    /// A slot for `endpoint_id`, however long the wait, counted among the deliveries waiting
    /// for it (for a busy endpoint's backlog, which takes only as many as
    /// [`Self::backlog_room`] says and must not be deferred again).
    pub async fn acquire_queued(&self, endpoint_id: EndpointId) -> Option<EndpointSlot> {
        let slots = self.slots(endpoint_id);
        if let Ok(permit) = slots.semaphore.clone().try_acquire_owned() {
            return Some(self.slot(permit, slots));
        }
        slots.waiting.fetch_add(1, Ordering::AcqRel);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting([Some(&slots.waiting), Some(&self.waiting), None]);
        let permit = slots.semaphore.clone().acquire_owned().await.ok();
        drop(waiting);
        Some(self.slot(permit?, slots))
    }

    /// Whether the endpoint itself has a queue (at least as many deliveries waiting as it has
    /// slots), as opposed to being busy only because all endpoints together wait too much.
    pub fn has_queue_of_its_own(&self, endpoint_id: EndpointId) -> bool {
        self.slots(endpoint_id).waiting.load(Ordering::Acquire) >= self.per_endpoint
    }

    /// How many deliveries a busy endpoint's backlog may have taken out of the log and not
    /// finished: what it may queue in memory (about a second of its pace, or only its slots if
    /// it has not answered lately), at most four times its slots so that all endpoints
    /// together keep room to wait, and so that none waits long enough for the log to hand
    /// it out again.
    pub fn backlog_room(&self, endpoint_id: EndpointId) -> usize {
        self.may_wait(&self.slots(endpoint_id))
            .clamp(self.per_endpoint, self.per_endpoint * 4)
    }

    /// How many deliveries may wait in memory for this endpoint: about [`QUEUED_WAIT`] of
    /// its measured pace while it answers, never fewer than it has slots.
    fn may_wait(&self, slots: &EndpointSlots) -> usize {
        let held = slots.held_micros.load(Ordering::Relaxed);
        if !self.answering(slots) || held == 0 {
            return self.per_endpoint;
        }
        let per_second = self.per_endpoint as u128 * 1_000_000 / held as u128;
        let in_queued_wait = per_second * QUEUED_WAIT.as_millis() / 1_000;
        (in_queued_wait.min(usize::MAX as u128) as usize).max(self.per_endpoint)
    }

    /// Whether a request of the endpoint finished lately: only then is its measured pace
    /// trusted to bound how long its queue takes.
    fn answering(&self, slots: &EndpointSlots) -> bool {
        let released_at = slots.released_at_micros.load(Ordering::Relaxed);
        released_at > 0
            && micros_since(self.epoch).saturating_sub(released_at)
                <= ANSWERING_WITHIN.as_micros() as u64
    }

    fn slot(&self, permit: OwnedSemaphorePermit, slots: Arc<EndpointSlots>) -> EndpointSlot {
        EndpointSlot {
            _permit: permit,
            taken_at: Instant::now(),
            epoch: self.epoch,
            slots,
        }
    }

    fn slots(&self, endpoint_id: EndpointId) -> Arc<EndpointSlots> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Idle endpoints are dropped now and then so the map stays small.
        if endpoints.len() > 10_000 {
            endpoints.retain(|_, slots| {
                slots.semaphore.available_permits() < self.per_endpoint
                    || slots.waiting.load(Ordering::Relaxed) > 0
            });
        }
        endpoints
            .entry(endpoint_id)
            .or_insert_with(|| {
                Arc::new(EndpointSlots {
                    semaphore: Arc::new(Semaphore::new(self.per_endpoint)),
                    waiting: AtomicUsize::new(0),
                    held_micros: AtomicU64::new(0),
                    released_at_micros: AtomicU64::new(0),
                    next_slot: Mutex::new(Instant::now()),
                })
            })
            .clone()
    }

    /// Spreads busy deliveries over the time the endpoint needs to take them: each one is
    /// given the next free place in a queue that drains at the endpoint's measured pace.
    fn next_slot(&self, slots: &EndpointSlots) -> Duration {
        let held = match slots.held_micros.load(Ordering::Relaxed) {
            0 => ASSUMED_REQUEST,
            micros => Duration::from_micros(micros),
        };
        let spacing = held / self.per_endpoint as u32;
        let now = Instant::now();
        let mut next = slots
            .next_slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *next = (*next).max(now + held.max(MIN_DEFERRAL)) + spacing;
        *next - now
    }
}

/// Counts a delivery as waiting until dropped (also when the wait is abandoned).
struct Waiting<'a>([Option<&'a AtomicUsize>; 3]);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        for counter in self.0.into_iter().flatten() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_endpoint_gets_at_most_its_share_and_others_are_not_held_up() {
        let limits = EndpointConcurrency::new(2, 100);
        let busy = EndpointId::generate();
        let first = limits.acquire(busy).await;
        let second = limits.acquire(busy).await;
        assert!(first.is_ok() && second.is_ok());
        let third = tokio::time::timeout(Duration::from_millis(50), limits.acquire(busy)).await;
        assert!(
            third.is_err(),
            "a third request to a full endpoint must wait"
        );
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            limits.acquire(EndpointId::generate()),
        )
        .await;
        assert!(matches!(other, Ok(Ok(_))), "another endpoint must not wait");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), limits.acquire(busy)).await;
        assert!(matches!(third, Ok(Ok(_))));
    }

    #[tokio::test]
    async fn past_the_waiting_bound_an_endpoint_is_busy_and_deferrals_are_spread() {
        let limits = Arc::new(EndpointConcurrency::new(2, 100));
        let slow = EndpointId::generate();
        let _held = [
            limits.acquire(slow).await.ok(),
            limits.acquire(slow).await.ok(),
        ];
        // Two may wait (as many as the endpoint has slots)…
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move { limits.acquire(slow).await.map(|_| ()) })
            })
            .collect();
        while limits.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        // …the next ones are told to come back later, each a little later than the last.
        let mut previous = Duration::ZERO;
        for _ in 0..5 {
            let Err(Busy { retry_in }) = limits.acquire(slow).await else {
                panic!("a full endpoint with a full waiting line must be busy");
            };
            assert!(
                retry_in >= MIN_DEFERRAL && retry_in > previous,
                "{retry_in:?}"
            );
            previous = retry_in;
        }
        assert_eq!(limits.waiting.load(Ordering::Acquire), 2);
        for waiter in waiters {
            waiter.abort();
        }
    }

    #[tokio::test]
    async fn the_bound_in_all_holds_across_endpoints() {
        let limits = Arc::new(EndpointConcurrency::new(1, 3));
        let mut held = Vec::new();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let endpoint = EndpointId::generate();
            held.push(limits.acquire(endpoint).await.ok());
            let limits_for_waiter = limits.clone();
            waiters.push(tokio::spawn(async move {
                limits_for_waiter.acquire(endpoint).await.map(|_| ())
            }));
        }
        while limits.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let endpoint = EndpointId::generate();
        held.push(limits.acquire(endpoint).await.ok());
        assert!(limits.acquire(endpoint).await.is_err());
        for waiter in waiters {
            waiter.abort();
        }
    }

    /// Holds every slot of `endpoint` until the returned guards are dropped.
    async fn fill(limits: &EndpointConcurrency, endpoint: EndpointId) -> Vec<EndpointSlot> {
        let mut held = Vec::new();
        for _ in 0..limits.per_endpoint {
            held.push(limits.acquire(endpoint).await.expect("a free slot"));
        }
        held
    }

    async fn waiters(
        limits: &Arc<EndpointConcurrency>,
        endpoint: EndpointId,
        count: usize,
    ) -> Vec<tokio::task::JoinHandle<Result<(), Busy>>> {
        let before = limits.waiting.load(Ordering::Acquire);
        let handles = (0..count)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move { limits.acquire(endpoint).await.map(|_| ()) })
            })
            .collect();
        while limits.waiting.load(Ordering::Acquire) < before + count {
            tokio::task::yield_now().await;
        }
        handles
    }

    #[tokio::test]
    async fn an_endpoint_that_answers_fast_queues_a_second_of_its_pace_not_only_its_slots() {
        let limits = Arc::new(EndpointConcurrency::new(2, 1_000));
        let fast = EndpointId::generate();
        // Requests of about 10 ms: two slots take about 200 a second.
        for _ in 0..8 {
            let slot = limits.acquire(fast).await.expect("a free slot");
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(slot);
        }
        let may_wait = limits.may_wait(&limits.slots(fast));
        assert!((100..=200).contains(&may_wait), "{may_wait}");
        let _held = fill(&limits, fast).await;
        let queued = waiters(&limits, fast, may_wait - 1).await;
        assert_eq!(limits.waiting.load(Ordering::Acquire), may_wait - 1);
        for waiter in queued {
            waiter.abort();
        }
    }

    #[tokio::test]
    async fn an_endpoint_that_stopped_answering_queues_only_as_many_as_its_slots() {
        let limits = Arc::new(EndpointConcurrency::new(2, 1_000));
        let stalled = EndpointId::generate();
        drop(limits.acquire(stalled).await);
        assert!(limits.may_wait(&limits.slots(stalled)) > 2);
        let _held = fill(&limits, stalled).await;
        // Nothing finished since: after `ANSWERING_WITHIN` its fast pace is not trusted.
        tokio::time::sleep(ANSWERING_WITHIN + Duration::from_millis(20)).await;
        assert_eq!(limits.may_wait(&limits.slots(stalled)), 2);
        let queued = waiters(&limits, stalled, 2).await;
        assert!(limits.acquire(stalled).await.is_err());
        for waiter in queued {
            waiter.abort();
        }
    }

    #[tokio::test]
    async fn a_backlogs_deliveries_wait_counted_and_make_the_endpoint_busy_for_others() {
        let limits = Arc::new(EndpointConcurrency::new(2, 1_000));
        let busy = EndpointId::generate();
        let _held = fill(&limits, busy).await;
        assert!(!limits.has_queue_of_its_own(busy));
        // Not answering lately: room for as many as it has slots.
        assert_eq!(limits.backlog_room(busy), 2);
        let from_backlog: Vec<_> = (0..2)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move { limits.acquire_queued(busy).await.map(|_| ()) })
            })
            .collect();
        while limits.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(limits.has_queue_of_its_own(busy));
        // A delivery that is not from the backlog finds the endpoint's queue full.
        assert!(limits.acquire(busy).await.is_err());
        for waiter in from_backlog {
            waiter.abort();
        }
    }

    #[tokio::test]
    async fn a_fast_endpoints_backlog_room_is_at_most_four_times_its_slots() {
        let limits = EndpointConcurrency::new(2, 1_000);
        let fast = EndpointId::generate();
        for _ in 0..8 {
            drop(limits.acquire(fast).await.expect("a free slot"));
        }
        assert_eq!(limits.backlog_room(fast), 8);
    }

    #[tokio::test]
    async fn endpoints_that_answer_may_queue_past_the_bound_of_those_that_do_not() {
        let limits = Arc::new(EndpointConcurrency::new(1, 2));
        // Two endpoints that have not answered fill the bound of their kind…
        let mut held = Vec::new();
        let mut queued = Vec::new();
        for _ in 0..2 {
            let stalled = EndpointId::generate();
            held.push(limits.acquire(stalled).await.ok());
            queued.extend(waiters(&limits, stalled, 1).await);
        }
        let third = EndpointId::generate();
        held.push(limits.acquire(third).await.ok());
        assert!(limits.acquire(third).await.is_err());
        // …while one that answers fast may still queue (up to eight times that bound in all).
        let fast = EndpointId::generate();
        for _ in 0..8 {
            drop(limits.acquire(fast).await.expect("a free slot"));
        }
        let _slot = limits.acquire(fast).await.expect("a free slot");
        let fast_waiters = tokio::time::timeout(Duration::from_secs(1), waiters(&limits, fast, 3))
            .await
            .expect("three deliveries queue for an endpoint that answers");
        queued.extend(fast_waiters);
        assert_eq!(limits.waiting.load(Ordering::Acquire), 5);
        for waiter in queued {
            waiter.abort();
        }
    }
}
