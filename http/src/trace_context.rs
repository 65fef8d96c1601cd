//! Herald's part in W3C trace context and in OpenTelemetry trace export: the caller's
//! `traceparent`, the one receivers get, and the two spans Herald exports for an event (its
//! ingest, and each delivery attempt) joined to the event's trace.
//!
//! The export itself (SDK, OTLP exporter) is set up by the binary, which puts the OpenTelemetry
//! layer behind the [`ExportedSpans`] filter. Everything else here asks the subscriber for that
//! filter first and does nothing, allocating nothing, when it is not there: with export off a
//! delivery costs what it did before.
//!
//! The trace of an event: the caller's span (when it sent a `traceparent`) → `ingest` → each
//! `attempt` → the receiver's spans. The log keeps only the event's trace id, so an attempt
//! finds its parent, the ingest span, by its id: [`ingest_span_id`] of the event id. The ingest
//! span gets that id from the binary's id generator, through [`take_chosen_span_id`].

use axum::http::HeaderMap;
use herald_schemas::EventId;
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context as OtelContext;
use std::cell::Cell;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// A valid W3C `traceparent`: the caller's trace and span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_id: u64,
}

impl TraceParent {
    /// The `traceparent` header's value, when it is valid: ids in hex (upper case tolerated),
    /// neither all zeros, as the W3C recommendation requires (a receiver ignores the header
    /// otherwise).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; later versions may append more.
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") || flags.len() != 2 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        hex_id(version, 2)?;
        hex_id(flags, 2)?;
        let trace_id = hex_id(trace_id, 32)?;
        let parent_id = u64::try_from(hex_id(parent_id, 16)?).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
        })
    }

    /// The request's `traceparent`, when it sent a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(Self::parse)
    }

    /// The trace id as Herald records it: 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// The `traceparent` a receiver gets: the event's trace, and `span_id` (the attempt's) as
/// its parent, sampled.
pub fn traceparent_header(trace_id: &str, span_id: u64) -> String {
    format!("00-{trace_id}-{span_id:016x}-01")
}

/// The span id of an event's ingest span, which its attempts name as their parent: from the
/// random part of the event id (UUID v7), never zero.
pub fn ingest_span_id(event_id: EventId) -> u64 {
    let bytes = event_id.as_uuid().into_bytes();
    let mut low = [0; 8];
    low.copy_from_slice(&bytes[8..]);
    u64::from_be_bytes(low).max(1)
}

/// The span names Herald exports, each the root of its part of an event's trace.
const EXPORTED_SPANS: [&str; 2] = ["ingest", "attempt"];

/// Which spans and events the OpenTelemetry layer sees: Herald's `ingest` and `attempt` spans
/// and whatever happens inside them, at `info` or above. Housekeeping (projector batches,
/// the outbox relay, consumers) belongs to no event's trace and is not exported. Its presence
/// in the subscriber is also how this module knows that export is on.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportedSpans;

impl<S> Filter<S> for ExportedSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, context: &Context<'_, S>) -> bool {
        if *metadata.level() > Level::INFO {
            return false;
        }
        let exported_root = metadata.is_span()
            && metadata.target().starts_with("herald")
            && EXPORTED_SPANS.contains(&metadata.name());
        // The context is this filter's: its current span is the nearest exported one.
        exported_root || context.lookup_current().is_some()
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        match *metadata.level() > Level::INFO {
            true => Interest::never(),
            false => Interest::sometimes(),
        }
    }
}

/// Whether this thread's subscriber exports spans.
pub fn exporting() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.downcast_ref::<ExportedSpans>().is_some())
}

/// Whether `span` belongs to a subscriber that exports spans.
fn exported(span: &Span) -> bool {
    span.with_subscriber(|(_, dispatch)| dispatch.downcast_ref::<ExportedSpans>().is_some())
        .unwrap_or(false)
}

thread_local! {
    /// The id the next span started on this thread gets (0: a random one).
    static CHOSEN_SPAN_ID: Cell<u64> = const { Cell::new(0) };
}

/// For the binary's id generator: the span id [`start_with_span_id`] chose for the span being
/// started on this thread, if any.
pub fn take_chosen_span_id() -> Option<u64> {
    Some(CHOSEN_SPAN_ID.with(|chosen| chosen.replace(0))).filter(|id| *id != 0)
}

/// Starts the exported `span` now, with `span_id` as its id and, when the caller sent a
/// `traceparent`, the caller's span as its parent. Returns the span's trace id (the caller's,
/// or a new one), or `None` when nothing is exported.
pub fn start_with_span_id(span: &Span, caller: Option<TraceParent>, span_id: u64) -> Option<u128> {
    if !exported(span) {
        return None;
    }
    if let Some(caller) = caller {
        // Only fails when the span was started already or is not exported: then it keeps
        // its own trace, which is all that can be done.
        let _ = span.set_parent(remote_parent(caller.trace_id, caller.parent_id));
    }
    // `context()` starts the span, on this thread, asking the id generator for its id.
    CHOSEN_SPAN_ID.with(|chosen| chosen.set(span_id));
    let context = span.context();
    CHOSEN_SPAN_ID.with(|chosen| chosen.set(0));
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| u128::from_be_bytes(span_context.trace_id().to_bytes()))
}

/// Puts the exported `span` (a delivery attempt, not started yet) in the event's trace, under
/// the event's ingest span. Does nothing when nothing is exported, or for a trace id that is
/// not 32 hex digits.
pub fn join_event_trace(span: &Span, trace_id: &str, event_id: EventId) {
    if !exported(span) {
        return;
    }
    if let Some(trace_id) = hex_id(trace_id, 32).filter(|id| *id != 0) {
        let _ = span.set_parent(remote_parent(trace_id, ingest_span_id(event_id)));
    }
}

/// `text` as a number when it is exactly `digits` hex digits.
fn hex_id(text: &str, digits: usize) -> Option<u128> {
    let hex = text.len() == digits && text.bytes().all(|byte| byte.is_ascii_hexdigit());
    hex.then(|| u128::from_str_radix(text, 16).ok()).flatten()
}

/// The exported id of `span` (starting it if it was not yet), or `None` when nothing is
/// exported.
pub fn exported_span_id(span: &Span) -> Option<u64> {
    if !exported(span) {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| u64::from_be_bytes(span_context.span_id().to_bytes()))
}

/// Records the HTTP status the exported `span`'s work answered or got.
pub fn record_http_status(span: &Span, status: u16) {
    if exported(span) {
        span.set_attribute("http.response.status_code", i64::from(status));
    }
}

/// Records how the work of the exported `span` ended: an outcome word, and an error status
/// when it failed.
pub fn record_outcome(span: &Span, outcome: &'static str, failed: bool) {
    if !exported(span) {
        return;
    }
    span.set_attribute("outcome", outcome);
    if failed {
        span.set_status(Status::error(outcome));
    }
}

/// A parent context for a span whose parent lives elsewhere (another process, or a span of
/// Herald's that ended before).
fn remote_parent(trace_id: u128, span_id: u64) -> OtelContext {
    OtelContext::new().with_remote_span_context(SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_and_parent() {
        let parent = TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id, 0x00f0_67aa_0ba9_02b7);
        // A later version may add fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn an_invalid_traceparent_is_ignored() {
        for value in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
            "",
        ] {
            assert_eq!(TraceParent::parse(value), None, "{value}");
        }
    }

    #[test]
    fn the_outgoing_traceparent_names_the_given_span() {
        assert_eq!(
            traceparent_header("4bf92f3577b34da6a3ce929d0e0e4736", 0xab),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000ab-01"
        );
        let parsed = TraceParent::parse(&traceparent_header(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            u64::MAX,
        ));
        assert_eq!(parsed.map(|parent| parent.parent_id), Some(u64::MAX));
    }

    #[test]
    fn an_events_ingest_span_id_is_its_own_and_never_zero() {
        let first = EventId::generate();
        let second = EventId::generate();
        assert_eq!(ingest_span_id(first), ingest_span_id(first));
        assert_ne!(ingest_span_id(first), ingest_span_id(second));
        assert_ne!(ingest_span_id(EventId(uuid::Uuid::nil())), 0);
    }

    #[test]
    fn without_export_nothing_is_started_or_recorded() {
        let span = tracing::info_span!("attempt");
        assert!(!exporting());
        assert_eq!(start_with_span_id(&span, None, 7), None);
        assert_eq!(exported_span_id(&span), None);
        assert_eq!(take_chosen_span_id(), None);
    }
}
