//! Samples `herald_retries_waiting`: how many retries are scheduled and not yet taken out.
//!
//! The retry stream is a work queue: a retry leaves it once its attempt is made (or it moves
//! on to another tier), so the stream's message count is exactly that number, and asking the
//! server for it is one request per interval per process, whatever the traffic. Counting per
//! delivery instead would put a shared counter on the hot path and drift with every crash.

use async_nats::jetstream;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Often enough for alerts and dashboards (Prometheus scrapes every 15 s or so).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Samples `retry_stream`'s message count every `SAMPLE_EVERY` until `shutdown`.
pub async fn sample(mut retry_stream: jetstream::stream::Stream, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match retry_stream.info().await {
            Ok(info) => herald_metrics::metrics().retries_waiting(info.state.messages),
            // The gauge keeps its last value; the retry workers report a log that is down.
            Err(error) => tracing::debug!(%error, "could not sample the retry stream"),
        }
    }
}
