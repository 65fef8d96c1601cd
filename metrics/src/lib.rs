//! Herald's operational metrics, one registry per process, rendered by `GET /metrics` in the
//! Prometheus text format. Labels stay few and bounded (route template, method, status
//! class, outcome, error class, projection): tenant and endpoint ids belong to ClickHouse, not
//! here. Every family is described for operators in `docs/operations.md`.
//!
//! The metrics are process-wide statics so that the places that count (the HTTP edge, the
//! delivery worker) need no handle threaded through them; every family is registered once,
//! on first use.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

/// One HTTP request answered, by route template (`/v1/events/{event_id}`), method and status
/// class (`2xx` … `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: &'static str,
}

/// A read model fed from the log: `postgres` or `clickhouse`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: &'static str,
}

/// One of Herald's own events, by type (`herald.endpoint.disabled`, … five in all).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationalLabels {
    pub event_type: &'static str,
}

/// One delivery attempt, by outcome and error class (`none` when it succeeded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub outcome: &'static str,
    pub error_class: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    events_accepted: Counter,
    attempts: Family<AttemptLabels, Counter>,
    attempt_seconds: Histogram,
    delivered_seconds: Histogram,
    in_flight: Gauge,
    publish_seconds: Histogram,
    ingest_seconds: Histogram,
    event_append_seconds: Histogram,
    outbox_backlog: Gauge,
    retries_waiting: Gauge,
    breakers_open: Gauge,
    projection_lag_messages: Family<ProjectionLabels, Gauge>,
    projection_lag_seconds: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    operational_events: Family<OperationalLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status class",
            requests.clone(),
        );
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Events accepted into the log (answered 202)",
            events_accepted.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts recorded, by outcome and error class",
            attempts.clone(),
        );
        // 1 ms to ~33 s.
        let attempt_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "attempt_duration_seconds",
            "How long attempts that made a request took, request to response",
            attempt_seconds.clone(),
        );
        // 1 ms to ~9 h: deliveries that needed retries take hours.
        let delivered_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 25));
        registry.register(
            "accept_to_delivered_seconds",
            "From an event's acceptance to the successful attempt of one of its deliveries",
            delivered_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "attempts_in_flight",
            "HTTP attempts this process has in flight now",
            in_flight.clone(),
        );
        // 0.1 ms to ~3 s.
        let publish_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "log_publish_duration_seconds",
            "From a log append to the log's acknowledgement",
            publish_seconds.clone(),
        );
        // 0.1 ms to ~3 s, as the appends: ingest's latency objective is tens of milliseconds.
        let ingest_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "ingest_duration_seconds",
            "From an authenticated event submission reaching its handler to its 202",
            ingest_seconds.clone(),
        );
        let event_append_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "event_append_duration_seconds",
            "Of ingest's time, the append of the event to the log until its acknowledgement",
            event_append_seconds.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog",
            "Configuration changes staged but not yet appended to the log (as this process's relay last counted)",
            outbox_backlog.clone(),
        );
        let retries_waiting = Gauge::default();
        registry.register(
            "retries_waiting",
            "Retries scheduled in the log's retry stream and not yet taken out (as this process last sampled it)",
            retries_waiting.clone(),
        );
        let breakers_open = Gauge::default();
        registry.register(
            "breakers_open",
            "Endpoints whose circuit breaker is open or half-open in this delivery process",
            breakers_open.clone(),
        );
        let projection_lag_messages = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_lag_messages",
            "Log messages from the first one a projection has still to apply to the log's end (0 when caught up)",
            projection_lag_messages.clone(),
        );
        let projection_lag_seconds = Family::<ProjectionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "projection_lag_seconds",
            "How long the oldest log message a projection has still to apply has been in the log (0 when caught up)",
            projection_lag_seconds.clone(),
        );
        let operational_events = Family::<OperationalLabels, Counter>::default();
        registry.register(
            "operational_events",
            "Herald's own herald.* events accepted into the log, by type (facts no endpoint listens for are not counted)",
            operational_events.clone(),
        );
        Self {
            operational_events,
            registry,
            requests,
            events_accepted,
            attempts,
            attempt_seconds,
            delivered_seconds,
            in_flight,
            publish_seconds,
            ingest_seconds,
            event_append_seconds,
            outbox_backlog,
            retries_waiting,
            breakers_open,
            projection_lag_messages,
            projection_lag_seconds,
        }
    }

    pub fn request_answered(&self, route: &str, method: &str, status: u16) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
    }

    /// An event answered 202: `took` in its handler, `append_took` of that for the append.
    pub fn event_accepted(&self, took: Duration, append_took: Duration) {
        self.events_accepted.inc();
        self.ingest_seconds.observe(took.as_secs_f64());
        self.event_append_seconds.observe(append_took.as_secs_f64());
    }

    /// One of Herald's own events accepted; `event_type` is one of the five `herald.…` types.
    pub fn operational_event_accepted(&self, event_type: &'static str) {
        self.operational_events
            .get_or_create(&OperationalLabels { event_type })
            .inc();
    }

    /// An attempt recorded; `request_took` when it made a request, `since_accepted` when it
    /// succeeded.
    pub fn attempt_recorded(
        &self,
        outcome: &'static str,
        error_class: Option<&'static str>,
        request_took: Option<Duration>,
        since_accepted: Option<Duration>,
    ) {
        self.attempts
            .get_or_create(&AttemptLabels {
                outcome,
                error_class: error_class.unwrap_or("none"),
            })
            .inc();
        if let Some(took) = request_took {
            self.attempt_seconds.observe(took.as_secs_f64());
        }
        if let Some(since) = since_accepted {
            self.delivered_seconds.observe(since.as_secs_f64());
        }
    }

    /// Counts an attempt in flight until the returned guard is dropped.
    pub fn attempt_in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn log_published(&self, took: Duration) {
        self.publish_seconds.observe(took.as_secs_f64());
    }

    pub fn outbox_backlog(&self, staged: i64) {
        self.outbox_backlog.set(staged);
    }

    pub fn retries_waiting(&self, waiting: u64) {
        self.retries_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Breakers opened (positive) or closed (negative); counted on each change rather than
    /// recounted, so it costs the same however many endpoints are in trouble.
    pub fn breakers_opened(&self, change: i64) {
        self.breakers_open.inc_by(change);
    }

    /// How far `projection` is behind the log, as last sampled.
    pub fn projection_lag(&self, projection: &'static str, messages: u64, behind: Duration) {
        let labels = ProjectionLabels { projection };
        self.projection_lag_messages
            .get_or_create(&labels)
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        self.projection_lag_seconds
            .get_or_create(&labels)
            .set(behind.as_secs_f64());
    }

    /// Every family, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// An attempt in flight; dropping it counts the attempt as done.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.request_answered("/v1/events", "POST", 202);
        metrics.request_answered("/v1/events", "POST", 202);
        metrics.event_accepted(Duration::from_millis(3), Duration::from_millis(2));
        metrics.attempt_recorded(
            "retry_scheduled",
            Some("http_5xx"),
            Some(Duration::from_millis(12)),
            None,
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "herald_http_requests_total{route=\"/v1/events\",method=\"POST\",status=\"2xx\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("herald_events_accepted_total 1"), "{text}");
        assert!(
            text.contains("herald_ingest_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_event_append_duration_seconds_sum 0.002"),
            "{text}"
        );
        assert!(
            text.contains(
                "herald_delivery_attempts_total{outcome=\"retry_scheduled\",error_class=\"http_5xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("herald_attempt_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_accept_to_delivered_seconds_count 0"),
            "{text}"
        );
    }

    #[test]
    fn gauges_show_what_was_last_set() {
        let metrics = Metrics::new();
        metrics.retries_waiting(7);
        metrics.breakers_opened(1);
        metrics.breakers_opened(1);
        metrics.breakers_opened(-1);
        metrics.projection_lag("postgres", 12, Duration::from_millis(1500));
        metrics.projection_lag("clickhouse", 0, Duration::ZERO);
        let text = metrics.render();
        for line in [
            "herald_retries_waiting 7",
            "herald_breakers_open 1",
            "herald_projection_lag_messages{projection=\"postgres\"} 12",
            "herald_projection_lag_seconds{projection=\"postgres\"} 1.5",
            "herald_projection_lag_messages{projection=\"clickhouse\"} 0",
            "herald_projection_lag_seconds{projection=\"clickhouse\"} 0.0",
        ] {
            assert!(text.lines().any(|shown| shown == line), "{line}: {text}");
        }
    }
}
