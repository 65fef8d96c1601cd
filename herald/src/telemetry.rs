//! The process's tracing subscriber: log lines (text, or JSON with `HERALD_LOG_FORMAT=json`)
//! filtered by `RUST_LOG`, and, when `HERALD_OTLP_ENDPOINT` is set, OpenTelemetry trace export
//! over OTLP/HTTP: the spans [`ExportedSpans`] admits, batched on tokio, flushed by
//! [`TraceExport::shutdown`].
//!
//! Without an endpoint the subscriber is the plain log one it always was: no OpenTelemetry
//! layer, so nothing in `herald_http::trace_context` does any work.

use crate::config::{ConfigError, TelemetryConfig};
use herald_http::trace_context::{take_chosen_span_id, ExportedSpans};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long one export request may take; also bounds the flush at shutdown.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not build the OTLP exporter's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("could not build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running trace export, to be flushed when the process stops.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        // The SDK waits for its export task synchronously: keep that off the async workers.
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "spans not all exported at shutdown"),
            Err(error) => tracing::warn!(%error, "span export shutdown failed"),
        }
    }
}

/// Installs the process's subscriber; with `export` (a service's configuration) that names an
/// endpoint, also trace export, which must then be shut down at the end. Needs a tokio runtime
/// when exporting.
pub fn init_tracing(
    export: Option<&TelemetryConfig>,
) -> Result<Option<TraceExport>, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|format| format == "json");
    let traces_url = match export {
        Some(config) => config.traces_url()?.map(|url| (url, config)),
        None => None,
    };
    let Some((traces_url, config)) = traces_url else {
        // The global filter lets callsites below its level cost nothing at all.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false);
        match json {
            true => builder.json().init(),
            false => builder.init(),
        }
        return Ok(None);
    };
    let provider = tracer_provider(&traces_url, &config.otlp_service_name)?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("herald"))
        // Herald's spans carry what matters as fields; none of these is worth a span's bytes.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Nothing reads OpenTelemetry's own current context: parents come from tracing's.
        .with_context_activation(false)
        .with_filter(ExportedSpans);
    // RUST_LOG now filters the log lines only: it does not decide what is exported.
    let lines = tracing_subscriber::fmt::layer().with_target(false);
    let lines = match json {
        true => lines.json().boxed(),
        false => lines.boxed(),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .init();
    tracing::info!(endpoint = %traces_url, "exporting trace spans over OTLP/HTTP");
    Ok(Some(TraceExport { provider }))
}

fn tracer_provider(
    traces_url: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    // The workspace's reqwest comes without a bundled crypto provider (as in delivery).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_id_generator(ChosenOrRandomIds::default())
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Random ids, except the span id `herald_http::trace_context` chose for the span it is
/// starting (an event's ingest span, whose id its attempts name as their parent).
#[derive(Debug, Default)]
struct ChosenOrRandomIds(RandomIdGenerator);

impl IdGenerator for ChosenOrRandomIds {
    fn new_trace_id(&self) -> TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        take_chosen_span_id().map_or_else(|| self.0.new_span_id(), SpanId::from)
    }
}
