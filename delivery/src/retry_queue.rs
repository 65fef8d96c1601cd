//! Retries wait in the log, never only in a process's memory, and without head-of-line
//! blocking.
//!
//! JetStream 2.9 has no per-message delivery time, so retries wait on a few *delay tiers*:
//! subject `<ns>.retries.<tier>` holds messages that become actionable `tier.delay` after
//! they were appended, or at their due time if that comes first. A retry not actionable yet
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
