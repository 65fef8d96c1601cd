//! Takes retries out of the retry queue's tiers (see `retry_queue`) when they are due and
//! attempts them as unordered deliveries.

use crate::attempt::DeliveryJob;
use crate::retry_queue::{actionable_at, RetryTier, TIERS};
use crate::stopping::{pause, HAND_BACK_DELAY};
use crate::unordered::UnorderedDeliveries;
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_log::{DurableConsumer, LogError};
use herald_schemas::{DecodeError, EventAccepted, LogMessage, RetryDue};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Retries due within this much are held in memory rather than moved to another tier.
const HOLD_IN_MEMORY: Duration = Duration::from_secs(1);
/// A head that becomes actionable within this much is treated as actionable now.
const WAKE_SLACK: Duration = Duration::from_millis(20);

/// Why a retry's event could not be read back from the log.
#[derive(Debug, thiserror::Error)]
enum EventUnreadable {
    #[error("could not read it from the log: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("sequence {sequence} holds {found}, not an accepted event")]
    NotAnEvent { sequence: u64, found: &'static str },
    #[error(transparent)]
    Undecodable(#[from] DecodeError),
}

/// Everything a tier consumer needs.
pub struct RetryWorker {
    pub deliveries: Arc<UnorderedDeliveries>,
    pub log_stream: jetstream::stream::Stream,
    pub retry_stream: jetstream::stream::Stream,
    pub ack_wait: Duration,
}

impl RetryWorker {
    /// A tier's consumer, created if the server has none, once the log answers (`None` if
    /// `shutdown` came first). The retry stream is a work queue (it holds only what is still
    /// to do), so a consumer created again reads all of it.
    pub async fn consumer(
        &self,
        tier: RetryTier,
        shutdown: &CancellationToken,
    ) -> Result<Option<PullConsumer>, LogError> {
        self.consumer_spec(tier)
            .open_when_available(&self.retry_stream, DeliverPolicy::All, shutdown)
            .await
    }

    fn consumer_spec(&self, tier: RetryTier) -> DurableConsumer {
        let namespace = self.deliveries.namespace();
        DurableConsumer {
            name: format!("retry_{}", tier.name),
            filter_subject: namespace.retry_subject(tier.name),
            ack_wait: self.ack_wait,
            max_ack_pending: match tier == TIERS[0] {
                // Every retry in it waits as a NAK until due (`actionable_at`).
                true => 50_000,
                false => 10_000,
            },
        }
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
                        let spec = self.consumer_spec(tier);
                        if let Ok(created) = spec.open(&self.retry_stream, DeliverPolicy::All).await
                        {
                            consumer = created;
                            continue;
                        }
                    }
                    pause(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Each retry is judged on its own: due times need not follow the append order
            // (see `take`), so one not actionable yet must not hold back those behind it. One
            // sent back with a delay is not delivered again before then, so the next pull does
            // not spin on it.
            while let Some(message) = batch.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(tier = tier.name, %error, "retry batch failed");
                        break;
                    }
                };
                self.take(tier, message, &tracker, &hard_stop).await;
            }
        }
    }

    /// Handles one message: attempts it (now, or held in memory until due within a second),
    /// moves it to the tier that fits, or sends it back until it is actionable.
    async fn take(
        self: &Arc<Self>,
        tier: RetryTier,
        message: jetstream::Message,
        tracker: &TaskTracker,
        hard_stop: &CancellationToken,
    ) {
        let retry = match LogMessage::decode(&message.payload) {
            Ok(LogMessage::RetryDue(retry)) => retry,
            other => {
                tracing::error!(tier = tier.name, result = ?other.map(|m| m.type_name()), "not a retry; dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
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
        let actionable_at = actionable_at(tier, appended_at, retry.due_at);
        let until_actionable = (actionable_at - now).to_std().unwrap_or(Duration::ZERO);
        let until_due = (retry.due_at - now).to_std().unwrap_or(Duration::ZERO);
        // A retry due within the hold is taken whether or not it is its tier's head: in the
        // shortest tier due times do not follow the append order (a 100 ms retry appended
        // after a 900 ms one is due first), and waiting for the head would delay it.
        if until_actionable > WAKE_SLACK && until_due > HOLD_IN_MEMORY {
            let _ = message.ack_with(AckKind::Nak(Some(until_actionable))).await;
            return;
        }
        if until_due > HOLD_IN_MEMORY {
            // Moved on apart from this loop: awaited here, each move waited for its append's
            // acknowledgement (the grouped writes' linger and a round trip), capping a tier at
            // ~150 moves a second. Behind an open breaker thousands of parked deliveries hop
            // through the shortest tier; the retries due behind them came out seconds late,
            // then all at once, and stalled delivery for every endpoint (`failing`).
            let worker = self.clone();
            tracker.spawn(async move {
                match worker.deliveries.retries().schedule(&retry).await {
                    Ok(()) => worker.deliveries.publisher().ack_grouped(message).await,
                    Err(error) => {
                        tracing::warn!(%error, "could not move retry to its next tier");
                        herald_log::hand_back::hand_back(message, Duration::from_secs(1));
                    }
                }
            });
            return;
        }
        let worker = self.clone();
        let hard_stop = hard_stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                acked = worker.attempt(retry, until_due) => match acked {
                    true => worker.deliveries.publisher().ack_grouped(message).await,
                    false => herald_log::hand_back::hand_back(message, Duration::from_secs(1)),
                },
                () = hard_stop.cancelled() => {
                    let _ = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
                }
            }
        });
    }

    async fn attempt(&self, retry: RetryDue, until_due: Duration) -> bool {
        tokio::time::sleep(until_due).await;
        let Some(job) = self.job(&retry).await else {
            return false;
        };
        match self.deliveries.run(job).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(event_id = %retry.event_id, %error, "retry attempt not recorded; will try again");
                false
            }
        }
    }

    /// The delivery `retry` stands for, with its event read back from the log.
    pub(crate) async fn job(&self, retry: &RetryDue) -> Option<DeliveryJob> {
        let event = match self.load_event(retry.event_sequence).await {
            Ok(event) => event,
            Err(reason) => {
                tracing::error!(event_id = %retry.event_id, %reason, "cannot attempt: event unreadable");
                return None;
            }
        };
        Some(DeliveryJob {
            event: Arc::new(event),
            event_sequence: retry.event_sequence,
            endpoint_id: retry.endpoint_id,
            attempt_number: retry.attempt_number,
            scheduled_at: retry.due_at,
        })
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn load_event(&self, sequence: u64) -> Result<EventAccepted, EventUnreadable> {
        let stored = self
            .log_stream
            .direct_get(sequence)
            .await
            .map_err(|error| EventUnreadable::Read(Box::new(error)))?;
        match LogMessage::decode(&stored.payload)? {
            LogMessage::EventAccepted(event) => Ok(event),
            other => Err(EventUnreadable::NotAnEvent {
                sequence,
                found: other.type_name(),
            }),
        }
    }
}
