//! Herald's own events (`herald.…`, see [`herald_schemas::operational`]): reads the facts in
//! the log a tenant may want to hear about — an endpoint disabled, a circuit breaker opened or
//! closed, a delivery dead-lettered — and accepts each as an event of that tenant, routed to
//! the endpoints that list its type, so that it is signed, retried and recorded like any
//! other event.
//!
//! Two durable consumers (attempts, and configuration and health) read the log from the first
//! start of a command process on; several processes share them. A fact is acknowledged only
//! once its event is in the log; its event id is derived from the fact and appended with
//! that id as the message id, so a fact read twice is still one event. A fact no endpoint
//! listens for is dropped rather than recorded: a dead-letter storm must not double the log
//! for nobody (ADR 0020).

use crate::state::CommandState;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, stream::Stream};
use chrono::Utc;
use herald_log::{DurableConsumer, LogError};
use herald_schemas::{EventAccepted, LogMessage, OperationalEvent, TenantId};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum OperationalEventsError {
    #[error("the log stream `{name}` is not there: {source}")]
    Stream {
        name: String,
        source: jetstream::context::GetStreamError,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

#[derive(Debug, thiserror::Error)]
enum AnnounceError {
    #[error("could not read the tenant's endpoints: {0}")]
    Routing(#[from] sqlx::Error),
    #[error(transparent)]
    Append(#[from] LogError),
    #[error("could not encode the event's payload: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AnnounceError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Routing(_) => true,
            Self::Append(error) => error.is_retryable(),
            Self::Encode(_) => false,
        }
    }
}

/// A fact read but not acknowledged (its process died) is read again after this long.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// A fact whose announcement could not be appended is asked again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How far back a consumer the log lost is created again from: an announcement made twice
/// keeps its id, one never made is lost.
const RECREATE_LOOKBACK: chrono::Duration = chrono::Duration::minutes(10);

/// Announces operational events until `shutdown`.
pub async fn announce_operational_events(
    state: CommandState,
    shutdown: CancellationToken,
) -> Result<(), OperationalEventsError> {
    let namespace = state.publisher.namespace().clone();
    let name = namespace.log_stream();
    // Opened once the log answers: a server restarting while Herald starts must not stop
    // ingest (`herald_log::when_available`).
    let stream = herald_log::when_available::stream(state.publisher.jetstream(), &name, &shutdown)
        .await
        .map_err(|source| OperationalEventsError::Stream {
            name: name.clone(),
            source,
        })?;
    let Some(stream) = stream else {
        return Ok(());
    };
    let consumers = [
        ("operational_attempts", namespace.attempts_filter()),
        ("operational_config", namespace.config_filter()),
    ]
    .map(|(name, filter_subject)| DurableConsumer {
        name: name.to_owned(),
        filter_subject,
        // What a killed process had read comes again after this long.
        ack_wait: ACK_WAIT,
        max_ack_pending: 1_000,
    });
    let mut opened = Vec::with_capacity(consumers.len());
    for spec in consumers {
        // Facts from before the first start are not announced: turning Herald's own events
        // on must not replay a history of dead letters.
        match spec
            .open_when_available(&stream, DeliverPolicy::New, &shutdown)
            .await?
        {
            Some(consumer) => opened.push((spec, consumer)),
            None => return Ok(()),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (spec, consumer) in opened {
        let (state, stream, shutdown) = (state.clone(), stream.clone(), shutdown.clone());
        tasks.spawn(async move { follow(spec, stream, consumer, state, shutdown).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn follow(
    spec: DurableConsumer,
    stream: Stream,
    consumer: jetstream::consumer::PullConsumer,
    state: CommandState,
    shutdown: CancellationToken,
) {
    let recreate_from = || async {
        DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc()
                - time::Duration::seconds(RECREATE_LOOKBACK.num_seconds()),
        }
    };
    spec.consume_durably(&stream, consumer, recreate_from, &shutdown, |message| {
        handle(&state, message, &shutdown)
    })
    .await;
}

async fn handle(state: &CommandState, message: jetstream::Message, shutdown: &CancellationToken) {
    if let Some((tenant_id, event)) = announcement(&message.payload) {
        loop {
            match announce(state, tenant_id, &event).await {
                Ok(()) => break,
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, %tenant_id, event_type = event.type_name(), "operational event not appended; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        // Left unacknowledged: the next process announces it.
                        () = shutdown.cancelled() => return,
                    }
                }
                Err(error) => {
                    tracing::error!(%error, %tenant_id, event_type = event.type_name(), "operational event refused by the log; dropped");
                    break;
                }
            }
        }
    }
    // Grouped with other writes: a lost acknowledgement only means the fact is read again.
    state.publisher.ack_grouped(message).await;
}

/// The operational event a raw log message calls for. Most messages on the attempts subject
/// are not dead letters: they are recognised without being decoded.
fn announcement(payload: &[u8]) -> Option<(TenantId, OperationalEvent)> {
    let text = std::str::from_utf8(payload).ok()?;
    if text.starts_with(r#"{"type":"attempt.recorded."#)
        && !text.contains(r#""outcome":"dead_lettered""#)
    {
        return None;
    }
    OperationalEvent::announcing(&LogMessage::decode(payload).ok()?)
}

async fn announce(
    state: &CommandState,
    tenant_id: TenantId,
    event: &OperationalEvent,
) -> Result<(), AnnounceError> {
    let event_type = event.type_name();
    let routes = state.routing.routes(tenant_id).await?;
    let endpoint_ids: Vec<_> = routes
        .iter()
        .filter(|route| route.accepts(event_type))
        .map(|route| route.endpoint_id)
        .collect();
    if endpoint_ids.is_empty() {
        return Ok(());
    }
    let event_id = event.event_id();
    let payload = serde_json::value::to_raw_value(&event.data())?;
    let accepted = LogMessage::EventAccepted(EventAccepted {
        event_id,
        tenant_id,
        event_type: event_type.to_owned(),
        payload,
        idempotency_key: None,
        accepted_at: Utc::now(),
        trace_id: format!("{:032x}", rand::random::<u128>()),
        endpoint_ids,
        target_endpoints: None,
        deliver_after: None,
        expires_at: None,
    });
    let subject = state.publisher.namespace().event_subject(tenant_id);
    state
        .publisher
        .publish_once(subject, &accepted, event_id.to_string())
        .await?;
    herald_metrics::metrics().operational_event_accepted(event_type);
    tracing::info!(%tenant_id, %event_id, event_type, "operational event accepted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::{
        AttemptId, AttemptOutcome, AttemptRecorded, EndpointId, ErrorClass, EventId,
    };

    fn attempt(outcome: AttemptOutcome, event_type: &str) -> Vec<u8> {
        LogMessage::AttemptRecorded(AttemptRecorded {
            attempt_id: AttemptId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant_id: TenantId::generate(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
            event_type: event_type.to_owned(),
            attempt_number: 2,
            event_accepted_at: Utc::now(),
            scheduled_at: Utc::now(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            http_status: Some(500),
            error_class: Some(ErrorClass::Http5xx),
            error_message: None,
            latency_ms: 1,
            response_body_hash: None,
            outcome,
            next_attempt_at: None,
            request_bytes: 0,
            response_bytes: 0,
        })
        .encode()
    }

    /// The shortcut that skips decoding must agree with the decoded rule, for every outcome.
    #[test]
    fn the_undecoded_shortcut_agrees_with_the_rule() {
        for outcome in AttemptOutcome::ALL {
            for event_type in ["invoice.paid", "herald.delivery.dead_lettered"] {
                let payload = attempt(outcome, event_type);
                let decoded = LogMessage::decode(&payload).expect("decodes");
                assert_eq!(
                    announcement(&payload).map(|(_, event)| event),
                    OperationalEvent::announcing(&decoded).map(|(_, event)| event),
                    "{outcome:?} {event_type}"
                );
            }
        }
        assert!(announcement(b"not json").is_none());
    }
}
