//! Appending an attempt's record to the log. The request has been made by then, so giving up
//! on the record means handing the event back and making the request again: a duplicate at
//! the endpoint, and, if the hand-back itself is lost with the server (a NAK sent while the
//! consumer elects a new leader), a wait of the whole ack wait before anything happens. A
//! record the log certainly did not take (no stream leader to take it) is therefore appended
//! again, until the log is back or the time the event's message allows is spent. A record
//! whose append may have reached the log (a timeout) is not: appended again, it could be
//! there twice, and the read models would count the attempt twice (ADR 0027).

use herald_log::doubling::Doubling;
use herald_log::{LogError, LogPublisher};
use herald_schemas::LogMessage;
use std::time::Duration;
use tokio::time::Instant;

/// First wait before appending again; doubled each time up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// How long a delivery keeps appending its record: half of what its log message has left once
/// the request is over (the ack wait less the longest request), so that the log does not hand
/// the event to another worker meanwhile. Never under a second.
pub fn persistence(ack_wait: Duration, request_timeout: Duration) -> Duration {
    (ack_wait.saturating_sub(request_timeout) / 2).max(Duration::from_secs(1))
}

const WAITS: Doubling = Doubling {
    first: FIRST_WAIT,
    longest: LONGEST_WAIT,
};

/// The wait before the next try after one that waited `previous` (zero for the first), or
/// `None` when a try after it would start past `persist_for` since the first.
pub fn next_wait(previous: Duration, spent: Duration, persist_for: Duration) -> Option<Duration> {
    WAITS.next(previous, spent, persist_for)
}

/// Appends `record` on `subject()` (grouped with other writes when `grouped`), again while
/// the log surely did not take it, for at most `persist_for`. The subject is made per try, so
/// that the usual single try costs no copy of it.
pub async fn append(
    publisher: &LogPublisher,
    subject: impl Fn() -> String,
    record: &LogMessage,
    grouped: bool,
    persist_for: Duration,
) -> Result<u64, LogError> {
    let started = Instant::now();
    let mut wait = Duration::ZERO;
    loop {
        let appended = match grouped {
            true => publisher.publish_grouped(subject(), record).await,
            false => publisher.publish(subject(), record).await,
        };
        let error = match appended {
            Ok(sequence) => return Ok(sequence),
            Err(error) if error.surely_not_appended() => error,
            Err(error) => return Err(error),
        };
        wait = match next_wait(wait, started.elapsed(), persist_for) {
            Some(wait) => wait,
            None => return Err(error),
        };
        tracing::warn!(%error, ?wait, "attempt record not appended; appending it again");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The waits a record sees when every try fails at once.
    fn waits(persist_for: Duration) -> Vec<Duration> {
        let (mut waits, mut spent, mut wait) = (Vec::new(), Duration::ZERO, Duration::ZERO);
        while let Some(next) = next_wait(wait, spent, persist_for) {
            waits.push(next);
            spent += next;
            wait = next;
        }
        waits
    }

    #[test]
    fn the_default_settings_keep_trying_for_over_twenty_seconds() {
        let persist_for = persistence(Duration::from_secs(60), Duration::from_secs(15));
        assert_eq!(persist_for, Duration::from_millis(22_500));
        let waits = waits(persist_for);
        assert_eq!(
            waits[..5],
            [100, 200, 400, 800, 1600].map(Duration::from_millis)
        );
        assert!(waits.iter().sum::<Duration>() > Duration::from_secs(20));
    }

    proptest! {
        #[test]
        fn tries_stop_within_the_persistence_and_never_wait_long(
            ack_wait_ms in 0u64..600_000,
            request_timeout_ms in 0u64..600_000,
        ) {
            let persist_for = persistence(
                Duration::from_millis(ack_wait_ms),
                Duration::from_millis(request_timeout_ms),
            );
            prop_assert!(persist_for >= Duration::from_secs(1));
            prop_assert!(
                persist_for <= Duration::from_millis(ack_wait_ms / 2).max(Duration::from_secs(1))
            );
            let waits = waits(persist_for);
            prop_assert!(!waits.is_empty());
            prop_assert!(waits.iter().sum::<Duration>() <= persist_for);
            prop_assert!(waits.iter().all(|wait| *wait <= LONGEST_WAIT));
            // No gap in the tries longer than the longest wait before the persistence ends.
            prop_assert!(persist_for - waits.iter().sum::<Duration>() < LONGEST_WAIT);
            prop_assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        }
    }
}
