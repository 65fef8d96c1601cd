//! Sends events to Herald's ingest API, open or closed loop, and keeps what each got back.
//!
//! Open loop: event n of a phase is due at the phase's start + n/rate and is sent then,
//! whether or not earlier ones were answered; every latency counts from the due time, so a
//! stalled Herald cannot hide by slowing the sender down (no coordinated omission). Closed
//! loop: a fixed number of requests in flight, each sent when one is answered, to find the
//! maximum: a closed loop counts an event in flight until it is delivered (to every endpoint
//! the run counts), not just until it is answered, so the maximum found is what ingest,
//! delivery and the log sustain together, with a bounded backlog.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// Requests in flight at most in open loop (a guard for file descriptors: a sender this far
/// behind is late, and the lateness is counted because latencies start at the due time).
const OPEN_LOOP_IN_FLIGHT: usize = 4_096;

const SHARDS: usize = 64;

#[derive(Clone, Debug)]
pub struct SentEvent {
    pub index: u64,
    pub due: Instant,
    /// When the request was handed to the HTTP client: later than `due` when the generator
    /// itself fell behind.
    pub sent: Instant,
    pub answered: Instant,
    /// `None`: refused or failed (anything but a 202 with an event id).
    pub event_id: Option<String>,
}

/// Which event types events get, and so which endpoints receive them.
#[derive(Clone, Copy, Debug)]
pub enum Routing {
    /// Every event goes to every endpoint.
    All,
    /// Event n goes to endpoint n mod `endpoints` only (each endpoint lists its own type).
    OnePerEvent { endpoints: usize },
}

impl Routing {
    pub fn event_type(self, index: u64) -> String {
        match self {
            Self::All => "bench.event".to_owned(),
            Self::OnePerEvent { endpoints } => format!("bench.e{}", index % endpoints as u64),
        }
    }

    pub fn endpoint_filter(self, endpoint: usize) -> Option<Vec<String>> {
        match self {
            Self::All => None,
            Self::OnePerEvent { .. } => Some(vec![format!("bench.e{endpoint}")]),
        }
    }

    pub fn endpoints_of(self, index: u64, endpoints: usize) -> std::ops::Range<usize> {
        match self {
            Self::All => 0..endpoints,
            Self::OnePerEvent { endpoints } => {
                let endpoint = (index % endpoints as u64) as usize;
                endpoint..endpoint + 1
            }
        }
    }
}

#[derive(Clone)]
pub struct Ingest {
    client: reqwest::Client,
    url: String,
    api_key: String,
    routing: Routing,
    endpoints: usize,
    counted: fn(usize) -> bool,
    /// Deliveries still to arrive that a closed loop may have outstanding; the receiver
    /// gives one back with each first arrival.
    undelivered: Arc<Semaphore>,
    padding: Arc<str>,
    next_index: Arc<AtomicU64>,
    /// Sharded by index, for the reason the receiver's ledger is.
    sent: Arc<Vec<Mutex<Vec<SentEvent>>>>,
    tracker: TaskTracker,
}

impl Ingest {
    pub fn new(
        client: reqwest::Client,
        herald: &str,
        api_key: String,
        endpoints: &crate::session::Endpoints,
        undelivered: Arc<Semaphore>,
        payload_bytes: usize,
    ) -> Self {
        Self {
            client,
            url: format!("{herald}/v1/events"),
            api_key,
            routing: endpoints.routing,
            endpoints: endpoints.count,
            counted: endpoints.counted,
            undelivered,
            padding: "x".repeat(payload_bytes.saturating_sub(60)).into(),
            next_index: Arc::new(AtomicU64::new(0)),
            sent: Arc::new((0..SHARDS).map(|_| Mutex::new(Vec::new())).collect()),
            tracker: TaskTracker::new(),
        }
    }

    /// Schedules `rate` events a second for `duration`; returns when the last is sent
    /// (answers may still be outstanding).
    pub async fn open_loop(&self, rate: f64, duration: Duration) {
        let permits = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT));
        let started = Instant::now();
        let count = (rate * duration.as_secs_f64()).round() as u64;
        for n in 0..count {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let index = self.next_index.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            self.tracker.spawn(async move {
                this.send(index, due).await;
                drop(permit);
            });
        }
    }

    /// Sends with `concurrency` requests in flight and at most `window` events not yet
    /// delivered, for `duration` or until event `limit` is sent.
    pub async fn closed_loop(
        &self,
        concurrency: usize,
        window: usize,
        duration: Duration,
        limit: Option<u64>,
    ) {
        let deadline = Instant::now() + duration;
        let workers = TaskTracker::new();
        let permits = (0..window as u64)
            .map(|index| self.weight(index))
            .sum::<u32>();
        self.undelivered.add_permits(permits as usize);
        for _ in 0..concurrency {
            let this = self.clone();
            workers.spawn(async move {
                while Instant::now() < deadline {
                    let index = this.next_index.fetch_add(1, Ordering::Relaxed);
                    if limit.is_some_and(|limit| index >= limit) {
                        break;
                    }
                    let weight = this.weight(index);
                    let Ok(taken) = this.undelivered.acquire_many(weight).await else {
                        break;
                    };
                    taken.forget();
                    if !this.send(index, Instant::now()).await {
                        this.undelivered.add_permits(weight as usize);
                    }
                }
            });
        }
        workers.close();
        workers.wait().await;
    }

    /// Waits for every answer and hands over what was sent.
    pub async fn finish(&self) -> Vec<SentEvent> {
        self.tracker.close();
        self.tracker.wait().await;
        let mut sent = Vec::new();
        for shard in self.sent.iter() {
            if let Ok(mut shard) = shard.lock() {
                sent.append(&mut shard);
            }
        }
        sent.sort_by_key(|event| event.index);
        sent
    }

    /// Deliveries the run counts for event `index`.
    fn weight(&self, index: u64) -> u32 {
        let counted = self.counted;
        (self.routing.endpoints_of(index, self.endpoints))
            .filter(|&endpoint| counted(endpoint))
            .count() as u32
    }

    /// Whether the event was accepted.
    async fn send(&self, index: u64, due: Instant) -> bool {
        let body = json!({
            "type": self.routing.event_type(index),
            "payload": { "index": index, "padding": &*self.padding },
        });
        let handed_over = Instant::now();
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await;
        let answered = Instant::now();
        let event_id = match response {
            Ok(response) if response.status() == 202 => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["event_id"].as_str().map(str::to_owned)),
            Ok(_) | Err(_) => None,
        };
        let accepted = event_id.is_some();
        if let Ok(mut sent) = self.sent[index as usize % SHARDS].lock() {
            sent.push(SentEvent {
                index,
                due,
                sent: handed_over,
                answered,
                event_id,
            });
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_event_routing_names_the_endpoint_that_lists_the_type() {
        let routing = Routing::OnePerEvent { endpoints: 7 };
        for index in 0..50u64 {
            let endpoints = routing.endpoints_of(index, 7);
            assert_eq!(endpoints.len(), 1);
            let filter = routing.endpoint_filter(endpoints.start).expect("filter");
            assert_eq!(filter, vec![routing.event_type(index)]);
        }
        assert_eq!(Routing::All.endpoints_of(3, 10), 0..10);
    }
}
