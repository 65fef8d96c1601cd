//! One span per API request, with what is known about the request: method, path, the caller's
//! W3C trace id, the tenant once its API key is checked ([`crate::AuthenticatedTenant`]) and
//! the response status. A route that starts a trace of its own (ingest, when the caller sent
//! no `traceparent`) records its id in `trace_id`.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::{display, Empty};
use tracing::Instrument;

/// Middleware (`axum::middleware::from_fn(request_span)`) running each request in its span.
pub async fn request_span(request: Request, next: Next) -> Response {
    // The route template, not the path: ids in paths would make the label unbounded.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = Empty,
        tenant_id = Empty,
        status = Empty,
    );
    if !span.is_disabled() {
        if let Some(trace_id) = incoming_trace_id(request.headers()) {
            span.record("trace_id", display(trace_id));
        }
    }
    async move {
        let response = next.run(request).await;
        tracing::Span::current().record("status", response.status().as_u16());
        herald_metrics::metrics().request_answered(&route, &method, response.status().as_u16());
        if response.status().is_server_error() {
            tracing::warn!("request failed");
        }
        response
    }
    .instrument(span)
    .await
}

/// The trace id of the caller's `traceparent` header (lowercase hex), when it sent a valid one
/// ([`crate::trace_context::TraceParent`]).
pub fn incoming_trace_id(headers: &HeaderMap) -> Option<String> {
    crate::trace_context::TraceParent::from_headers(headers).map(|parent| parent.trace_id_hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_traceparent(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_str(value).expect("header value"),
        );
        headers
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_in_lowercase() {
        let headers = with_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
        assert_eq!(
            incoming_trace_id(&headers).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn an_invalid_or_missing_traceparent_gives_none() {
        assert_eq!(incoming_trace_id(&HeaderMap::new()), None);
        for value in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            // A parent id of zeros makes the whole header invalid (W3C trace context).
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            assert_eq!(incoming_trace_id(&with_traceparent(value)), None, "{value}");
        }
    }
}
