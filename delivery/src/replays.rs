//! Turns `delivery.replay_requested.v1` into scheduled attempts: each replayed delivery goes
//! to the retry queue, due now, so replays share the retry path (breakers, tiers, records).

use crate::retry_queue::RetryScheduler;
use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer, AckKind};
use chrono::Utc;
use futures::StreamExt;
use herald_schemas::{LogMessage, ReplayRequested, RetryDue};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CONSUMER_NAME: &str = "replays";

pub async fn consumer(
    log_stream: &jetstream::stream::Stream,
    replays_filter: String,
) -> Result<PullConsumer, String> {
    log_stream
        .get_or_create_consumer(
            CONSUMER_NAME,
            pull::Config {
                durable_name: Some(CONSUMER_NAME.to_owned()),
                filter_subject: replays_filter,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|error| format!("replay consumer: {error}"))
}

pub async fn run(retries: RetryScheduler, consumer: PullConsumer, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let messages = consumer
            .stream()
            .expires(Duration::from_secs(5))
            .heartbeat(Duration::from_secs(2))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot pull replay requests; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                () = shutdown.cancelled() => return,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "replay pull interrupted");
                    break;
                }
                None => break,
            };
            let kind = match LogMessage::decode(&message.payload) {
                Ok(LogMessage::ReplayRequested(replay)) => {
                    match schedule(&retries, &replay).await {
                        Ok(()) => AckKind::Ack,
                        Err(error) => {
                            tracing::warn!(%error, event_id = %replay.event_id, "replay not scheduled; will retry");
                            AckKind::Nak(Some(Duration::from_secs(1)))
                        }
                    }
                }
                Ok(_) => AckKind::Ack,
                Err(error) => {
                    tracing::error!(%error, "undecodable replay request; dropped");
                    AckKind::Term
                }
            };
            let _ = message.ack_with(kind).await;
        }
    }
}

async fn schedule(
    retries: &RetryScheduler,
    replay: &ReplayRequested,
) -> Result<(), herald_log::LogError> {
    let due_at = Utc::now();
    for delivery in &replay.deliveries {
        retries
            .schedule(&RetryDue {
                event_id: replay.event_id,
                endpoint_id: delivery.endpoint_id,
                tenant_id: replay.tenant_id,
                event_sequence: replay.event_sequence,
                attempt_number: delivery.attempt_number,
                due_at,
            })
            .await?;
    }
    tracing::info!(event_id = %replay.event_id, deliveries = replay.deliveries.len(), "replay scheduled");
    Ok(())
}
