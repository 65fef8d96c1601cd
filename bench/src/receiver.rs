//! The benchmark's own webhook receiver: one path per endpoint (`/hook/<n>`), each answering
//! as the scenario says (204, 500, or hanging past Herald's request timeout), and a ledger of
//! what arrived: the first arrival of each (endpoint, `webhook-id`) and how many came again.

use anyhow::Result;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    Accept = 0,
    /// Answers 500 at once.
    Fail = 1,
    /// Answers after a minute: longer than Herald waits (15 s by default).
    Hang = 2,
}

impl Behaviour {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Fail,
            2 => Self::Hang,
            _ => Self::Accept,
        }
    }
}

pub struct Receiver {
    pub base_url: String,
    state: Arc<ReceiverState>,
}

struct ReceiverState {
    behaviours: Vec<AtomicU8>,
    /// (endpoint index, webhook-id) → first arrival at an accepting endpoint.
    /// Sharded: a map of millions of entries doubling under one lock stalled every arrival
    /// for long enough to show as a latency spike of Herald's.
    arrivals: Vec<Mutex<HashMap<(u32, String), Instant>>>,
    /// First arrivals per endpoint, to watch the drain without walking the ledger.
    first_arrivals: Vec<AtomicU64>,
    /// Counted endpoints (a first arrival there gives a permit back to `undelivered`).
    counted: fn(usize) -> bool,
    undelivered: Arc<tokio::sync::Semaphore>,
    duplicates: AtomicU64,
    /// Requests answered with a failure (500 or hang).
    refused: AtomicU64,
}

impl Receiver {
    pub async fn start(
        endpoints: usize,
        counted: fn(usize) -> bool,
        undelivered: Arc<tokio::sync::Semaphore>,
        expected_arrivals: usize,
    ) -> Result<Self> {
        let state = Arc::new(ReceiverState {
            behaviours: (0..endpoints).map(|_| AtomicU8::new(0)).collect(),
            arrivals: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_capacity(expected_arrivals / SHARDS)))
                .collect(),
            first_arrivals: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
            counted,
            undelivered,
            duplicates: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route("/hook/{endpoint}", post(arrive))
            .with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base_url = format!("http://{}/hook", listener.local_addr()?);
        // The receiver answers on threads of its own, as a customer's receiver runs apart
        // from the service that sends events: on the sender's runtime, arrivals queued
        // behind the sender's tasks, and that queue read as a slow endpoint holding Herald's
        // slots (docs/PERFORMANCE.md, fifth round: `efficiency` at 100 %).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RECEIVER_THREADS)
            .thread_name("receiver")
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("receiver".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        let _ = axum::serve(listener, router).await;
                    }
                })
            })?;
        Ok(Self { base_url, state })
    }

    pub fn url(&self, endpoint: usize) -> String {
        format!("{}/{endpoint}", self.base_url)
    }

    pub fn set_behaviour(&self, endpoint: usize, behaviour: Behaviour) {
        self.state.behaviours[endpoint].store(behaviour as u8, Ordering::Relaxed);
    }

    /// First arrivals so far at the endpoints `counted` picks.
    pub fn arrivals_at(&self, counted: &dyn Fn(usize) -> bool) -> u64 {
        (self.state.first_arrivals.iter().enumerate())
            .filter(|(endpoint, _)| counted(*endpoint))
            .map(|(_, arrivals)| arrivals.load(Ordering::Relaxed))
            .sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.state.duplicates.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Takes the ledger of first arrivals (the receiver keeps counting duplicates).
    pub fn take_arrivals(&self) -> HashMap<(u32, String), Instant> {
        let mut all = HashMap::new();
        for shard in &self.state.arrivals {
            if let Ok(mut shard) = shard.lock() {
                all.extend(shard.drain());
            }
        }
        all
    }
}

const SHARDS: usize = 64;

/// As many as the machine's cores: the receiver is most of the generator's work.
const RECEIVER_THREADS: usize = 2;

fn shard_of(id: &str) -> usize {
    // Event ids are UUIDv7: their last characters are random.
    id.bytes()
        .rev()
        .take(2)
        .fold(0usize, |hash, byte| hash * 31 + byte as usize)
        % SHARDS
}

async fn arrive(
    State(state): State<Arc<ReceiverState>>,
    Path(endpoint): Path<u32>,
    headers: HeaderMap,
) -> StatusCode {
    let at = Instant::now();
    let behaviour = state
        .behaviours
        .get(endpoint as usize)
        .map(|value| Behaviour::from_u8(value.load(Ordering::Relaxed)))
        .unwrap_or(Behaviour::Fail);
    match behaviour {
        Behaviour::Fail => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        Behaviour::Hang => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        Behaviour::Accept => {}
    }
    let Some(id) = headers
        .get("webhook-id")
        .and_then(|value| value.to_str().ok())
    else {
        return StatusCode::BAD_REQUEST;
    };
    if let Ok(mut arrivals) = state.arrivals[shard_of(id)].lock() {
        match arrivals.entry((endpoint, id.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => {
                state.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(at);
                state.first_arrivals[endpoint as usize].fetch_add(1, Ordering::Relaxed);
                if (state.counted)(endpoint as usize) {
                    state.undelivered.add_permits(1);
                }
            }
        }
    }
    StatusCode::NO_CONTENT
}
