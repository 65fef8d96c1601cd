//! Handing a message back to the log after failing to deal with it, so that it comes again
//! soon — and making sure the log heard it.
//!
//! A negative acknowledgement is a plain publish: sent while the log's server is gone, it is
//! lost, and the message comes again only after the consumer's ack wait (60 s for events).
//! CI's `log_outage` run showed it: attempts cut off by a server kill could not be recorded,
//! their events were handed back while the server was down, and the read model showed them a
//! minute after the server was back. So the hand-back asks for the server's confirmation and
//! is sent again until it comes, for as long as it could still matter.

use crate::doubling::Doubling;
use async_nats::jetstream::{self, AckKind};
use std::time::Duration;
use tokio::time::Instant;

/// How long a hand-back is sent again without confirmation: after the consumers' ack wait the
/// log hands the message out again anyway.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// Hands `message` back, to be delivered again after `delay`, without waiting: a task sends
/// the hand-back until the log confirms it or [`GIVE_UP_AFTER`] has passed.
pub fn hand_back(message: jetstream::Message, delay: Duration) {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut wait = Duration::ZERO;
        loop {
            let error = match message.double_ack_with(AckKind::Nak(Some(delay))).await {
                Ok(()) => return,
                Err(error) => error,
            };
            wait = match next_wait(wait, started.elapsed()) {
                Some(wait) => wait,
                None => {
                    tracing::warn!(%error, "hand-back not confirmed; the log hands the message out again after its ack wait");
                    return;
                }
            };
            tracing::debug!(%error, ?wait, "hand-back not confirmed; sending it again");
            tokio::time::sleep(wait).await;
        }
    });
}

const WAITS: Doubling = Doubling {
    first: FIRST_WAIT,
    longest: LONGEST_WAIT,
};

/// The wait before sending again after a wait of `previous` (zero for the first), or `None`
/// once `spent` and the wait would pass [`GIVE_UP_AFTER`].
fn next_wait(previous: Duration, spent: Duration) -> Option<Duration> {
    WAITS.next(previous, spent, GIVE_UP_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Sent again soon (never more than a second apart) and never past the give-up time.
        #[test]
        fn waits_are_short_and_end_by_the_give_up_time(
            spent_per_try_ms in proptest::collection::vec(0u64..10_000, 1..200),
        ) {
            let (mut spent, mut wait) = (Duration::ZERO, Duration::ZERO);
            for try_took in spent_per_try_ms {
                spent += Duration::from_millis(try_took);
                match next_wait(wait, spent) {
                    Some(next) => {
                        prop_assert!(next <= LONGEST_WAIT && next >= FIRST_WAIT);
                        prop_assert!(next >= wait.min(LONGEST_WAIT));
                        prop_assert!(spent + next <= GIVE_UP_AFTER);
                        spent += next;
                        wait = next;
                    }
                    None => {
                        prop_assert!(spent > GIVE_UP_AFTER - LONGEST_WAIT);
                        break;
                    }
                }
            }
        }
    }
}
