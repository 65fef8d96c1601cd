//! Starting a service while the log is briefly away: its streams and consumers are opened
//! once the log answers again, instead of the service (and with it the process) stopping.
//!
//! A service opens its stream and durable consumers when it starts. If the only server, or
//! the leader of a stream, goes away in those moments, the request times out or is refused
//! with "unavailable"; the same request succeeds a few seconds later. A process that exited
//! there would leave a deployment without delivery for as long as its supervisor takes to
//! notice, and `herald all` took its ingest and query down with it (seen in CI:
//! `herald/tests/log_outage.rs`, a retry tier's consumer created while the server was killed).
//! A refusal that will not change — an invalid consumer definition, a stream that does not
//! exist — still fails at once.

use async_nats::jetstream::{self, context::GetStreamErrorKind};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The first pause after a failed try; each next one is twice as long, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Calls `attempt` until it succeeds, fails with an error `retryable` does not accept, or
/// `shutdown` is cancelled (`Ok(None)`). Pauses grow from 100 ms to 5 s between tries, each
/// try logged as a warning naming `what`.
pub async fn when_available<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut pause = FIRST_PAUSE;
    loop {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        match attempt().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) if retryable(&error) => tracing::warn!(
                %error,
                what,
                retry_in_ms = pause.as_millis() as u64,
                "the log is not available; trying again"
            ),
            Err(error) => return Err(error),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Whether a JetStream API error is the server saying "not now": 503 is what it answers while
/// JetStream starts, or while a stream or the meta group has no leader.
pub fn is_unavailable(error: &jetstream::Error) -> bool {
    error.code() == 503
}

/// The stream named `name`, once the log can say; `Ok(None)` if `shutdown` came first.
pub async fn stream(
    jetstream: &jetstream::Context,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Option<jetstream::stream::Stream>, jetstream::context::GetStreamError> {
    when_available(
        name,
        shutdown,
        |error: &jetstream::context::GetStreamError| match error.kind() {
            GetStreamErrorKind::Request => true,
            GetStreamErrorKind::JetStream(error) => is_unavailable(&error),
            GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => false,
        },
        || jetstream.get_stream(name),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug, PartialEq)]
    enum Failure {
        NotNow,
        Never,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_what_may_pass_and_returns_what_will_not() {
        let shutdown = CancellationToken::new();
        let tries = Cell::new(0);
        let outcome = when_available(
            "test",
            &shutdown,
            |failure| *failure == Failure::NotNow,
            || {
                tries.set(tries.get() + 1);
                let answer = match tries.get() {
                    1..=3 => Err(Failure::NotNow),
                    _ => Ok(tries.get()),
                };
                std::future::ready(answer)
            },
        )
        .await;
        assert_eq!(outcome, Ok(Some(4)));

        tries.set(0);
        let outcome: Result<Option<()>, Failure> = when_available(
            "test",
            &shutdown,
            |failure| *failure == Failure::NotNow,
            || {
                tries.set(tries.get() + 1);
                std::future::ready(Err(match tries.get() {
                    1 => Failure::NotNow,
                    _ => Failure::Never,
                }))
            },
        )
        .await;
        assert_eq!(outcome, Err(Failure::Never));
        assert_eq!(tries.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_to_five_seconds_and_shutdown_ends_the_wait() {
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let tries = Cell::new(Vec::new());
        let stop_after = Duration::from_secs(30);
        let outcome: Result<Option<()>, Failure> = tokio::select! {
            outcome = when_available("test", &shutdown, |_| true, || {
                let mut seen = tries.take();
                seen.push(started.elapsed());
                tries.set(seen);
                std::future::ready(Err(Failure::NotNow))
            }) => outcome,
            () = async {
                tokio::time::sleep(stop_after).await;
                shutdown.cancel();
                std::future::pending::<()>().await
            } => unreachable!(),
        };
        assert_eq!(
            outcome,
            Ok(None),
            "cancelled while waiting: no value, no error"
        );
        let seen = tries.take();
        let pauses: Vec<u64> = seen
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_millis() as u64)
            .collect();
        assert_eq!(
            &pauses[..8],
            &[100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]
        );
        assert!(started.elapsed() <= stop_after + Duration::from_millis(1));
    }
}
