//! What every work loop of the delivery service shares about stopping: how long work handed
//! back to the log waits before it is redelivered, and a pause that ends early on stop.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Work handed back on shutdown is redelivered after this delay rather than at once: the
/// stopping process's outstanding pull requests stay registered at the server until its
/// connection closes, and an immediate redelivery could be sent straight back to them, where
/// nobody reads it any more, and then wait out the whole ack wait.
pub const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// Waits `wait`, or less if `stop` fires first.
pub async fn pause(stop: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = stop.cancelled() => {}
    }
}
