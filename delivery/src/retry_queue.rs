//! Retries wait in the log, never only in a process's memory, and without head-of-line
//! blocking.
//!
//! JetStream 2.9 has no per-message delivery time, so retries wait on a few *delay tiers*:
//! subject `<ns>.retries.<tier>` holds messages that become actionable `tier.delay` after
//! they were appended. Within one tier that moment only grows with the append order, so a
//! tier's consumer only ever has to wait for its head. A retry due later than the tier's delay
//! is moved on to the tier that fits what is left (a timing wheel made of streams); one due
//! within a second is held in memory, still unacknowledged, until its time. A crashed worker's
//! unacknowledged retries come back to another worker after the ack wait.

use crate::attempt::{AttemptRunner, DeliveryJob};
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_log::{DurableConsumer, LogError, LogPublisher};
use herald_schemas::{EventAccepted, LogMessage, RetryDue};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Retries due within this much are held in memory rather than moved to another tier.
const HOLD_IN_MEMORY: Duration = Duration::from_secs(1);
/// A head that becomes actionable within this much is treated as actionable now.
const WAKE_SLACK: Duration = Duration::from_millis(20);

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
        self.publisher
            .publish(subject, &LogMessage::RetryDue(retry.clone()))
            .await
            .map(|_| ())
    }

    /// Schedules a retry that several processes may schedule at once (a delivery found
    /// overdue): the log keeps one per delivery and attempt number.
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

/// Everything a tier consumer needs.
pub struct RetryWorker {
    pub runner: Arc<AttemptRunner>,
    pub log_stream: jetstream::stream::Stream,
    pub retry_stream: jetstream::stream::Stream,
    pub ack_wait: Duration,
}

impl RetryWorker {
    /// A tier's consumer, created if the server has none. The retry stream is a work queue
    /// (it holds only what is still to do), so a consumer created again reads all of it.
    pub async fn consumer(&self, tier: RetryTier) -> Result<PullConsumer, LogError> {
        let namespace = self.runner.publisher.namespace();
        DurableConsumer {
            name: format!("retry_{}", tier.name),
            filter_subject: namespace.retry_subject(tier.name),
            ack_wait: self.ack_wait,
            max_ack_pending: 10_000,
        }
        .open(&self.retry_stream, DeliverPolicy::All)
        .await
    }

    /// Runs one tier until `shutdown`. Attempts held in memory are tracked by `tracker` and
    /// handed back to the log (NAK) if `hard_stop` fires before they finish.
    pub async fn run_tier(
        self: Arc<Self>,
        tier: RetryTier,
        mut consumer: PullConsumer,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            let batch = consumer
                .batch()
                .max_messages(128)
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(tier = tier.name, %error, "retry pull failed");
                    if herald_log::is_lost(&consumer).await {
                        tracing::error!(
                            tier = tier.name,
                            "the log lost this tier's consumer; creating it again"
                        );
                        if let Ok(created) = self.consumer(tier).await {
                            consumer = created;
                            continue;
                        }
                    }
                    pause(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut head_wait: Option<Duration> = None;
            while let Some(message) = batch.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(tier = tier.name, %error, "retry batch failed");
                        break;
                    }
                };
                if let Some(wait) = head_wait {
                    let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
                    continue;
                }
                head_wait = self.take(tier, message, &tracker, &hard_stop).await;
            }
            if let Some(wait) = head_wait {
                pause(&shutdown, wait).await;
            }
        }
    }

    /// Handles one message; returns how long to wait when it is not actionable yet.
    async fn take(
        self: &Arc<Self>,
        tier: RetryTier,
        message: jetstream::Message,
        tracker: &TaskTracker,
        hard_stop: &CancellationToken,
    ) -> Option<Duration> {
        let retry = match LogMessage::decode(&message.payload) {
            Ok(LogMessage::RetryDue(retry)) => retry,
            other => {
                tracing::error!(tier = tier.name, result = ?other.map(|m| m.type_name()), "not a retry; dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return None;
            }
        };
        let now = Utc::now();
        let appended_at = message
            .info()
            .ok()
            .map(
                |info| DateTime::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64),
            )
            .unwrap_or(now);
        let actionable_at = retry
            .due_at
            .min(appended_at + chrono::Duration::from_std(tier.delay).unwrap_or_default());
        let until_actionable = (actionable_at - now).to_std().unwrap_or(Duration::ZERO);
        if until_actionable > WAKE_SLACK {
            let _ = message.ack_with(AckKind::Nak(Some(until_actionable))).await;
            return Some(until_actionable);
        }
        let until_due = (retry.due_at - now).to_std().unwrap_or(Duration::ZERO);
        if until_due > HOLD_IN_MEMORY {
            match self.runner.retries.schedule(&retry).await {
                Ok(()) => {
                    let _ = message.ack().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not move retry to its next tier");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
            return None;
        }
        let worker = self.clone();
        let hard_stop = hard_stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                acked = worker.attempt(retry, until_due) => {
                    let kind = if acked { AckKind::Ack } else { AckKind::Nak(Some(Duration::from_secs(1))) };
                    let _ = message.ack_with(kind).await;
                }
                () = hard_stop.cancelled() => {
                    let _ = message.ack_with(AckKind::Nak(Some(crate::first_attempts::HAND_BACK_DELAY))).await;
                }
            }
        });
        None
    }

    async fn attempt(&self, retry: RetryDue, until_due: Duration) -> bool {
        tokio::time::sleep(until_due).await;
        let event = match self.load_event(retry.event_sequence).await {
            Ok(event) => event,
            Err(reason) => {
                tracing::error!(event_id = %retry.event_id, %reason, "cannot retry: event unreadable");
                return false;
            }
        };
        let job = DeliveryJob {
            event: Arc::new(event),
            event_sequence: retry.event_sequence,
            endpoint_id: retry.endpoint_id,
            attempt_number: retry.attempt_number,
            scheduled_at: retry.due_at,
            in_lane: false,
        };
        match self.runner.run(job).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(event_id = %retry.event_id, %error, "retry attempt not recorded; will try again");
                false
            }
        }
    }

    async fn load_event(&self, sequence: u64) -> Result<EventAccepted, String> {
        let stored = self
            .log_stream
            .get_raw_message(sequence)
            .await
            .map_err(|error| error.to_string())?;
        match LogMessage::decode(&stored.payload) {
            Ok(LogMessage::EventAccepted(event)) => Ok(event),
            Ok(other) => Err(format!("sequence {sequence} holds {}", other.type_name())),
            Err(error) => Err(error.to_string()),
        }
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.cancelled() => {}
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
