//! Consumes accepted events and makes the first attempt to each of their endpoints at once.
//! An event's log message is acknowledged when every one of its deliveries has a durable
//! attempt record (and, where needed, a scheduled retry); on a hard stop it is handed back.
//! A copy the log hands out again of an event this process delivered, or is delivering, is
//! not delivered again (`handled_events`).

use crate::attempt::DeliveryJob;
use crate::handled_events::{HandledEvents, Taken, REMEMBERED_FOR};
use crate::stopping::HAND_BACK_DELAY;
use crate::unordered::UnorderedDeliveries;
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use herald_log::DurableConsumer;
use herald_schemas::LogMessage;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const CONSUMER_NAME: &str = "delivery";

pub fn consumer(
    events_filter: String,
    ack_wait: Duration,
    max_ack_pending: i64,
) -> DurableConsumer {
    DurableConsumer {
        name: CONSUMER_NAME.to_owned(),
        filter_subject: events_filter,
        ack_wait,
        max_ack_pending,
    }
}

/// Hands every event to its deliveries until `shutdown`; a consumer the log lost is created
/// again reading from `start`.
#[allow(clippy::too_many_arguments)]
pub async fn run<S, SFut>(
    deliveries: Arc<UnorderedDeliveries>,
    spec: DurableConsumer,
    log_stream: jetstream::stream::Stream,
    consumer: PullConsumer,
    start: S,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) where
    S: Fn() -> SFut,
    SFut: std::future::Future<Output = DeliverPolicy>,
{
    let handled = Arc::new(HandledEvents::new(REMEMBERED_FOR));
    spec.consume_durably(&log_stream, consumer, start, &shutdown, |message| {
        tracker.spawn(take_event(
            deliveries.clone(),
            handled.clone(),
            message,
            hard_stop.clone(),
        ));
        std::future::ready(())
    })
    .await;
}

/// Delivers an event unless this process has delivered it, or is delivering it, already.
async fn take_event(
    deliveries: Arc<UnorderedDeliveries>,
    handled: Arc<HandledEvents>,
    message: jetstream::Message,
    hard_stop: CancellationToken,
) {
    let Ok(sequence) = message.info().map(|info| info.stream_sequence) else {
        deliver_event(deliveries, message, hard_stop).await;
        return;
    };
    match handled.take(sequence, Instant::now()) {
        Taken::New => {}
        Taken::BeingDelivered => {
            tracing::debug!(
                sequence,
                "a copy of an event being delivered; left to the first"
            );
            return;
        }
        Taken::Delivered => {
            tracing::debug!(
                sequence,
                "a copy of an event delivered lately; acknowledged"
            );
            deliveries.publisher().ack_grouped(message).await;
            return;
        }
    }
    match deliver_event(deliveries, message, hard_stop).await {
        Settled::Acknowledged => handled.delivered(sequence, Instant::now()),
        Settled::HandedBack => handled.handed_back(sequence),
    }
}

/// What became of an event's log message.
enum Settled {
    Acknowledged,
    HandedBack,
}

async fn deliver_event(
    deliveries: Arc<UnorderedDeliveries>,
    message: jetstream::Message,
    hard_stop: CancellationToken,
) -> Settled {
    let event = match LogMessage::decode(&message.payload) {
        Ok(LogMessage::EventAccepted(event)) => Arc::new(event),
        Ok(other) => {
            tracing::debug!(kind = other.type_name(), "not an event; skipped");
            let _ = message.ack().await;
            return Settled::Acknowledged;
        }
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "undecodable event; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return Settled::Acknowledged;
        }
    };
    let event_sequence = match message.info() {
        Ok(info) => info.stream_sequence,
        Err(error) => {
            tracing::error!(%error, "message without stream metadata");
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return Settled::HandedBack;
        }
    };
    let attempts = event.endpoint_ids.iter().map(|&endpoint_id| {
        deliveries.run(DeliveryJob {
            event: event.clone(),
            event_sequence,
            endpoint_id,
            attempt_number: 1,
            scheduled_at: event.accepted_at,
        })
    });
    tokio::select! {
        results = futures::future::join_all(attempts) => {
            let failures = results.iter().filter(|result| result.is_err()).count();
            if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
                tracing::warn!(event_id = %event.event_id, failures, %error, "attempts not recorded; event handed back");
                herald_log::hand_back::hand_back(message, Duration::from_secs(1));
                Settled::HandedBack
            } else {
                deliveries.publisher().ack_grouped(message).await;
                Settled::Acknowledged
            }
        }
        () = hard_stop.cancelled() => {
            let _ = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await;
            Settled::HandedBack
        }
    }
}
