//! Turns `delivery.replay_requested.v1` into scheduled attempts: each replayed delivery goes
//! to the retry queue, due now, so replays share the retry path (breakers, tiers, records).

use crate::retry_queue::RetryScheduler;
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use herald_log::DurableConsumer;
use herald_schemas::{LogMessage, ReplayRequested, RetryDue};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CONSUMER_NAME: &str = "replays";

pub fn consumer(replays_filter: String) -> DurableConsumer {
    // 1 000 unacknowledged requests is the server's default; replays are few.
    DurableConsumer {
        name: CONSUMER_NAME.to_owned(),
        filter_subject: replays_filter,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 1_000,
    }
}

/// Schedules every replay request until `shutdown`; a consumer the log lost is created again
/// reading from `start`.
pub async fn run<S, SFut>(
    retries: RetryScheduler,
    spec: DurableConsumer,
    log_stream: jetstream::stream::Stream,
    consumer: PullConsumer,
    start: S,
    shutdown: CancellationToken,
) where
    S: Fn() -> SFut,
    SFut: std::future::Future<Output = DeliverPolicy>,
{
    spec.consume_durably(&log_stream, consumer, start, &shutdown, |message| {
        let retries = retries.clone();
        async move {
            let kind = match LogMessage::decode(&message.payload) {
                Ok(LogMessage::ReplayRequested(replay)) => match schedule(&retries, &replay).await {
                    Ok(()) => AckKind::Ack,
                    Err(error) => {
                        tracing::warn!(%error, event_id = %replay.event_id, "replay not scheduled; will retry");
                        // Scheduling fails when the log does, and a plain negative
                        // acknowledgement sent then can be lost (ADR 0027).
                        herald_log::hand_back::hand_back(message, Duration::from_secs(1));
                        return;
                    }
                },
                Ok(_) => AckKind::Ack,
                Err(error) => {
                    tracing::error!(%error, "undecodable replay request; dropped");
                    AckKind::Term
                }
            };
            let _ = message.ack_with(kind).await;
        }
    })
    .await;
}

#[tracing::instrument(level = "debug", skip_all, err, fields(
    tenant_id = %replay.tenant_id,
    event_id = %replay.event_id,
    deliveries = replay.deliveries.len(),
))]
async fn schedule(
    retries: &RetryScheduler,
    replay: &ReplayRequested,
) -> Result<(), herald_log::LogError> {
    let due_at = Utc::now();
    // All at once: each schedule is held for a group of log writes.
    futures::future::try_join_all(replay.deliveries.iter().map(|delivery| async move {
        retries
            .schedule(&RetryDue {
                event_id: replay.event_id,
                endpoint_id: delivery.endpoint_id,
                tenant_id: replay.tenant_id,
                event_sequence: replay.event_sequence,
                attempt_number: delivery.attempt_number,
                due_at,
            })
            .await
    }))
    .await?;
    tracing::info!(event_id = %replay.event_id, deliveries = replay.deliveries.len(), "replay scheduled");
    Ok(())
}
