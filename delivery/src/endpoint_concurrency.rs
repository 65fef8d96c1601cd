//! Bounds the requests in flight to each endpoint, so that one endpoint can neither take every
//! connection of the process nor be flooded; it also keeps the number of connections to a
//! receiver within the keep-alive pool, so connections are reused instead of reopened.
//!
//! A delivery waiting for a slot holds its log message unacknowledged, and the first-attempt
//! consumer stops handing out messages once too many are unacknowledged: a slow endpoint
//! whose deliveries all waited here would stall every other endpoint. So only a bounded
//! number may wait (per endpoint, and in all); past that the endpoint is *busy* and the
//! delivery is deferred through the retry queue to when a slot should be free, estimated from
//! how long the endpoint's requests take.

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

pub struct EndpointConcurrency {
    per_endpoint: usize,
    /// Deliveries that may wait in memory for a slot, per endpoint and in all.
    waiting_per_endpoint: usize,
    waiting_in_all: usize,
    waiting: Arc<AtomicUsize>,
    endpoints: Mutex<HashMap<EndpointId, Arc<EndpointSlots>>>,
}

struct EndpointSlots {
    semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Moving average of how long a slot is held, in microseconds.
    held_micros: AtomicU64,
    /// When the last delivery deferred for being busy was told to come back.
    next_slot: Mutex<Instant>,
}

/// A slot for one request; given back when dropped.
pub struct EndpointSlot {
    _permit: OwnedSemaphorePermit,
    taken_at: Instant,
    slots: Arc<EndpointSlots>,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        let held = self.taken_at.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let average = self.slots.held_micros.load(Ordering::Relaxed);
        // An exponential moving average over about the last eight requests.
        let updated = if average == 0 {
            held
        } else {
            average - average / 8 + held / 8
        };
        self.slots.held_micros.store(updated, Ordering::Relaxed);
    }
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
            waiting_per_endpoint: per_endpoint,
            waiting_in_all: waiting_in_all.max(1),
            waiting: Arc::new(AtomicUsize::new(0)),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `endpoint_id`, waiting for one if few enough deliveries wait already.
    pub async fn acquire(&self, endpoint_id: EndpointId) -> Result<EndpointSlot, Busy> {
        let slots = self.slots(endpoint_id);
        if let Ok(permit) = slots.semaphore.clone().try_acquire_owned() {
            return Ok(slot(permit, slots));
        }
        let waiting_here = slots.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting_in_all = self.waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = Waiting([&slots.waiting, &self.waiting]);
        if waiting_here >= self.waiting_per_endpoint || waiting_in_all >= self.waiting_in_all {
            return Err(Busy {
                retry_in: self.next_slot(&slots),
            });
        }
        let permit = slots.semaphore.clone().acquire_owned().await;
        drop(waiting);
        match permit {
            Ok(permit) => Ok(slot(permit, slots)),
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
        Some(slot(permit, slots))
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

fn slot(permit: OwnedSemaphorePermit, slots: Arc<EndpointSlots>) -> EndpointSlot {
    EndpointSlot {
        _permit: permit,
        taken_at: Instant::now(),
        slots,
    }
}

/// Counts a delivery as waiting until dropped (also when the wait is abandoned).
struct Waiting<'a>([&'a AtomicUsize; 2]);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        for counter in self.0 {
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
}
