//! A real HTTP receiver on loopback that records what it gets and answers as told.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at: Instant,
    /// The status this request was answered with.
    pub answered_status: u16,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// How long this answer takes (on top of the receiver's delay).
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Recorded {
    requests: Vec<ReceivedRequest>,
    script: VecDeque<Reply>,
    /// How long every answer takes.
    delay: std::time::Duration,
    /// Requests whose answer has been sent (or is being sent).
    answered: usize,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Every n-th unscripted request is answered 500 (0: none).
    fail_every: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything not scripted.
    pub async fn start() -> Self {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, recorded }
    }

    /// The next requests get these replies, in order; after them, 200.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.recorded.lock().expect("lock").script.extend(replies);
    }

    /// From now on every `n`-th request not scripted is answered 500 (a flaky receiver).
    pub fn fail_every(&self, n: usize) {
        self.recorded.lock().expect("lock").fail_every = n;
    }

    /// Every answer from now on takes this long (a slow receiver keeps attempts in flight).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.recorded.lock().expect("lock").delay = delay;
    }

    /// The distinct `webhook-id`s received so far.
    pub fn distinct_ids(&self) -> std::collections::HashSet<String> {
        self.recorded
            .lock()
            .expect("lock")
            .requests
            .iter()
            .map(|request| request.header("webhook-id").to_owned())
            .collect()
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.recorded.lock().expect("lock").requests.clone()
    }

    /// How many requests have been answered (as opposed to merely received).
    pub fn answered(&self) -> usize {
        self.recorded.lock().expect("lock").answered
    }

    /// The most requests this receiver was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.recorded.lock().expect("lock").max_in_flight
    }

    pub fn count(&self) -> usize {
        self.recorded.lock().expect("lock").requests.len()
    }
}

async fn receive(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (reply, delay) = {
        let mut recorded = recorded.lock().expect("lock");
        let flaky =
            recorded.fail_every > 0 && (recorded.requests.len() + 1) % recorded.fail_every == 0;
        let unscripted = Reply::status(if flaky { 500 } else { 200 });
        let reply = recorded.script.pop_front().unwrap_or(unscripted);
        recorded.requests.push(ReceivedRequest {
            headers,
            body,
            received_at: Instant::now(),
            answered_status: reply.status,
        });
        recorded.in_flight += 1;
        recorded.max_in_flight = recorded.max_in_flight.max(recorded.in_flight);
        let delay = recorded.delay + reply.delay;
        (reply, delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut recorded = recorded.lock().expect("lock");
        recorded.answered += 1;
        recorded.in_flight -= 1;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
