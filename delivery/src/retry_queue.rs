//! Retries wait in the log, never only in a process's memory, and without head-of-line
//! blocking.
//!
//! JetStream 2.9 has no per-message delivery time, so retries wait on a few *delay tiers*:
//! subject `<ns>.retries.<tier>` holds messages that become actionable `tier.delay` after
//! they were appended, or at their due time if that comes first; the shortest tier holds every
//! wait under ten seconds until its due time (`actionable_at`). A retry not actionable yet
//! goes back to its tier until it is (a NAK with that delay); one due later than the tier's
//! delay is moved on to the tier that fits what is left (a timing wheel made of streams); one
//! due within a second is held in memory, still unacknowledged, until its time. Each retry is
//! judged on its own: in the shortest tier due times do not follow the append order (a 100 ms
//! retry appended after a 900 ms one is due first), so none waits behind another. A crashed
//! worker's unacknowledged retries come back to another worker after the ack wait.
//!
//! This module puts retries in the queue; `retry_worker` takes them out and attempts them.

use chrono::Utc;
use herald_log::{LogError, LogPublisher};
use herald_schemas::{LogMessage, RetryDue};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryTier {
    pub name: &'static str,
    pub delay: Duration,
}

pub const TIERS: [RetryTier; 5] = [
    RetryTier {
        name: "t1s",
        delay: Duration::from_secs(1),
    },
    RetryTier {
        name: "t10s",
        delay: Duration::from_secs(10),
    },
    RetryTier {
        name: "t1m",
        delay: Duration::from_secs(60),
    },
    RetryTier {
        name: "t10m",
        delay: Duration::from_secs(600),
    },
    RetryTier {
        name: "t1h",
        delay: Duration::from_secs(3600),
    },
];

/// The longest tier not longer than `wait`; the shortest tier for waits under a second.
pub fn tier_for(wait: Duration) -> RetryTier {
    TIERS
        .iter()
        .rev()
        .find(|tier| tier.delay <= wait)
        .copied()
        .unwrap_or(TIERS[0])
}

/// When a retry on `tier`, appended at `appended_at` and due at `due_at`, is to be acted on:
/// attempted (held in memory if due within a second) or moved on to a longer tier. Until
/// then it waits in its tier as a NAK with that delay.
///
/// In every tier but the shortest, that is `tier.delay` after the append (or the due time if
/// earlier), so a long wait hops through a handful of tiers. The shortest tier takes every
/// wait under the next tier's delay (10 s), and there a retry waits for its due time in one
/// NAK: hopping once a second, a delivery parked for a few seconds behind an open breaker
/// cost an append, two reads and an acknowledgement per second it waited, and with thousands
/// parked those hops took more CPU than the healthy endpoints' deliveries (`failing`).
pub fn actionable_at(
    tier: RetryTier,
    appended_at: chrono::DateTime<Utc>,
    due_at: chrono::DateTime<Utc>,
) -> chrono::DateTime<Utc> {
    let horizon = match tier == TIERS[0] {
        true => TIERS[1].delay,
        false => tier.delay,
    };
    due_at.min(appended_at + chrono::Duration::from_std(horizon).unwrap_or_default())
}

/// Puts retries on the tier that fits their due time.
#[derive(Clone)]
pub struct RetryScheduler {
    publisher: LogPublisher,
}

impl RetryScheduler {
    pub fn new(publisher: LogPublisher) -> Self {
        Self { publisher }
    }

    pub async fn schedule(&self, retry: &RetryDue) -> Result<(), LogError> {
        let wait = (retry.due_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let subject = self
            .publisher
            .namespace()
            .retry_subject(tier_for(wait).name);
        self.append_grouped(subject, retry).await
    }

    /// Appends a delivery to its endpoint's busy backlog, to be taken out when the endpoint
    /// has room (`busy_backlogs`) rather than at a time.
    pub async fn append_to_busy_backlog(&self, retry: &RetryDue) -> Result<(), LogError> {
        let subject = self
            .publisher
            .namespace()
            .busy_backlog_subject(retry.endpoint_id);
        self.append_grouped(subject, retry).await
    }

    /// Grouped: what waits for the append is only the acknowledgement of the message it
    /// replaces.
    #[tracing::instrument(level = "debug", skip_all, err, fields(
        %subject,
        tenant_id = %retry.tenant_id,
        event_id = %retry.event_id,
        endpoint_id = %retry.endpoint_id,
        attempt_number = retry.attempt_number,
    ))]
    async fn append_grouped(&self, subject: String, retry: &RetryDue) -> Result<(), LogError> {
        self.publisher
            .publish_grouped(subject, &LogMessage::RetryDue(retry.clone()))
            .await
            .map(|_| ())
    }

    /// Schedules a retry that several processes may schedule at once (a delivery found
    /// overdue): the log keeps one per delivery and attempt number.
    #[tracing::instrument(level = "debug", skip_all, err, fields(
        tenant_id = %retry.tenant_id,
        event_id = %retry.event_id,
        endpoint_id = %retry.endpoint_id,
        attempt_number = retry.attempt_number,
    ))]
    pub async fn redispatch(&self, retry: &RetryDue) -> Result<(), LogError> {
        let subject = self.publisher.namespace().retry_subject(TIERS[0].name);
        let message_id = format!(
            "redispatch-{}-{}-{}",
            retry.event_id, retry.endpoint_id, retry.attempt_number
        );
        self.publisher
            .publish_once(subject, &LogMessage::RetryDue(retry.clone()), message_id)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A retry is acted on no later than due, and hops at most once per tier it passes:
        /// in the tier `tier_for` puts it on, it waits either until due or for that tier's
        /// whole delay (the shortest tier: until due).
        #[test]
        fn a_retry_waits_in_its_tier_until_due_or_for_the_tiers_delay(
            wait_ms in 0i64..(7 * 86_400_000),
        ) {
            let appended_at = chrono::Utc::now();
            let due_at = appended_at + chrono::Duration::milliseconds(wait_ms);
            let tier = tier_for(Duration::from_millis(wait_ms as u64));
            let at = actionable_at(tier, appended_at, due_at);
            prop_assert!(at <= due_at);
            let delay = chrono::Duration::milliseconds(tier.delay.as_millis() as i64);
            if tier == TIERS[0] {
                prop_assert_eq!(at, due_at, "the shortest tier waits until due, in one NAK");
            } else {
                prop_assert_eq!(at, appended_at + delay);
            }
        }
    }

    #[test]
    fn waits_go_to_the_longest_tier_that_does_not_overshoot() {
        assert_eq!(tier_for(Duration::from_millis(10)).name, "t1s");
        assert_eq!(tier_for(Duration::from_secs(9)).name, "t1s");
        assert_eq!(tier_for(Duration::from_secs(10)).name, "t10s");
        assert_eq!(tier_for(Duration::from_secs(3599)).name, "t10m");
        assert_eq!(tier_for(Duration::from_secs(86_400)).name, "t1h");
        for tier in TIERS {
            assert!(tier_for(tier.delay) == tier);
        }
    }
}
