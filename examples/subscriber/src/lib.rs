//! An example subscriber to Herald's log (`docs/subscribers.md`): a durable JetStream pull
//! consumer with explicit acknowledgements, filtered to one subject, that decodes every
//! message with [`LogMessage::decode`] and acknowledges it once it has been handled.
//!
//! The binary (`src/main.rs`) prints one line per message; `tests/tests/log_contract.rs`
//! drives the same functions against a running Herald.

use anyhow::{bail, Context, Result};
use async_nats::datetime::DateTime;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use herald_schemas::{DecodeError, LogMessage};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// Durable consumers Herald itself uses on its log stream. Binding one of them would take
/// messages away from Herald's own workers.
pub const HERALD_CONSUMERS: [&str; 2] = ["delivery", "replays"];

/// Where a consumer starts reading when it is created. A durable consumer that already
/// exists carries on from its own position: its start is fixed at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest message the stream holds.
    All,
    /// Only messages appended after the consumer is created.
    New,
    /// The message with this stream sequence, then every later one.
    Sequence(u64),
    /// The first message the stream received at or after this time, then every later one.
    Time(DateTime),
}

impl Start {
    pub fn deliver_policy(&self) -> DeliverPolicy {
        match self {
            Self::All => DeliverPolicy::All,
            Self::New => DeliverPolicy::New,
            Self::Sequence(start_sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: *start_sequence,
            },
            Self::Time(start_time) => DeliverPolicy::ByStartTime {
                start_time: *start_time,
            },
        }
    }
}

/// `all`, `new`, a stream sequence (`4711`) or an RFC 3339 time (`2025-06-02T09:00:00Z`).
impl FromStr for Start {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "all" => Ok(Self::All),
            "new" => Ok(Self::New),
            _ => match text.parse::<u64>() {
                Ok(0) => bail!("stream sequences start at 1"),
                Ok(sequence) => Ok(Self::Sequence(sequence)),
                Err(_) => async_nats::datetime::parse_rfc3339(text)
                    .map(Self::Time)
                    .map_err(|error| {
                        anyhow::anyhow!(
                            "`{text}` is not `all`, `new`, a stream sequence or an RFC 3339 time: {error}"
                        )
                    }),
            },
        }
    }
}

/// A durable pull consumer on one of Herald's streams.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// `<NS>_LOG`, e.g. `HERALD_LOG`.
    pub stream: String,
    /// The durable name: the server keeps this consumer's position under it.
    pub durable_name: String,
    /// e.g. `herald.attempts.>`; one tenant: `herald.attempts.<tenant_id>`.
    pub filter_subject: String,
    pub start: Start,
    /// How long the server waits for an acknowledgement before delivering a message again.
    pub ack_wait: Duration,
    /// How many messages may be delivered and not yet acknowledged.
    pub max_ack_pending: i64,
}

impl Subscription {
    /// A subscription with the settings `docs/subscribers.md` recommends.
    pub fn new(stream: String, durable_name: String, filter_subject: String, start: Start) -> Self {
        Self {
            stream,
            durable_name,
            filter_subject,
            start,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1_000,
        }
    }

    pub fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable_name.clone()),
            description: Some("Herald example subscriber".to_owned()),
            filter_subject: self.filter_subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_ack_pending,
            deliver_policy: self.start.deliver_policy(),
            ..Default::default()
        }
    }

    /// Binds to the durable consumer, creating it to read from `start` if the server has
    /// none. With `restart`, an existing consumer is deleted first, so that `start` applies.
    /// An existing consumer that reads other subjects is refused rather than silently used.
    pub async fn open(
        &self,
        jetstream: &jetstream::Context,
        restart: bool,
    ) -> Result<PullConsumer> {
        if HERALD_CONSUMERS.contains(&self.durable_name.as_str()) {
            bail!(
                "`{}` is Herald's own consumer; choose another durable name",
                self.durable_name
            );
        }
        let stream = jetstream
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("no stream `{}` (is Herald running?)", self.stream))?;
        if restart {
            // Deleting a consumer that does not exist is fine: there is nothing to restart.
            let _ = stream.delete_consumer(&self.durable_name).await;
        }
        let mut consumer: PullConsumer = stream
            .get_or_create_consumer(&self.durable_name, self.consumer_config())
            .await
            .with_context(|| format!("cannot create consumer `{}`", self.durable_name))?;
        let bound_filter = &consumer.info().await?.config.filter_subject;
        if *bound_filter != self.filter_subject {
            bail!(
                "consumer `{}` exists and reads `{bound_filter}`, not `{}`: restart it or choose \
                 another name",
                self.durable_name,
                self.filter_subject
            );
        }
        Ok(consumer)
    }
}

/// One message as the subscriber received it.
#[derive(Debug)]
pub struct Seen {
    /// Its position in the stream: resume after it with `Start::Sequence(stream_sequence + 1)`.
    pub stream_sequence: u64,
    /// When the stream received it.
    pub published: DateTime,
    /// How many times it has been delivered to this consumer (more than 1 after a redelivery).
    pub delivered: i64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub decoded: Result<LogMessage, DecodeError>,
}

impl Seen {
    /// The line the example prints: sequence, subject, type and the message's key fields.
    pub fn line(&self) -> String {
        let redelivered = if self.delivered > 1 {
            format!(" (delivery {})", self.delivered)
        } else {
            String::new()
        };
        let what = match &self.decoded {
            Ok(message) => format!("{} {}", message.type_name(), describe(message)),
            Err(DecodeError::UnknownType(type_name)) => {
                format!("{type_name} (a type this build does not know; skipped)")
            }
            Err(error) => format!("undecodable: {error}"),
        };
        format!(
            "{} {}{redelivered} {what}",
            self.stream_sequence, self.subject
        )
    }
}

/// The key fields of a message, on one line.
pub fn describe(message: &LogMessage) -> String {
    match message {
        LogMessage::EventAccepted(event) => format!(
            "event={} tenant={} event_type={} endpoints={}",
            event.event_id,
            event.tenant_id,
            event.event_type,
            event.endpoint_ids.len()
        ),
        LogMessage::AttemptRecorded(attempt) => format!(
            "event={} endpoint={} attempt={} outcome={} http_status={} latency_ms={}",
            attempt.event_id,
            attempt.endpoint_id,
            attempt.attempt_number,
            attempt.outcome.as_str(),
            attempt
                .http_status
                .map_or_else(|| "-".to_owned(), |status| status.to_string()),
            attempt.latency_ms
        ),
        LogMessage::DeliveryDeferred(deferred) => format!(
            "event={} endpoint={} attempt={} reason={} until={}",
            deferred.event_id,
            deferred.endpoint_id,
            deferred.attempt_number,
            deferred.reason.as_str(),
            deferred.until.to_rfc3339()
        ),
        LogMessage::RetryDue(retry) => format!(
            "event={} endpoint={} attempt={} due_at={}",
            retry.event_id,
            retry.endpoint_id,
            retry.attempt_number,
            retry.due_at.to_rfc3339()
        ),
        LogMessage::TenantCreated(tenant) => {
            format!("tenant={} name={:?}", tenant.tenant_id, tenant.name)
        }
        LogMessage::TenantUpdated(tenant) => format!(
            "tenant={} suspended={} changed={} by={}",
            tenant.tenant_id,
            tenant.suspended,
            tenant.changed.join(","),
            tenant.actor.label()
        ),
        LogMessage::ApiKeyCreated(key) => format!(
            "tenant={} key={} by={}",
            key.tenant_id,
            key.key_id,
            key.actor.label()
        ),
        LogMessage::ApiKeyRevoked(key) => format!(
            "tenant={} key={} by={}",
            key.tenant_id,
            key.key_id,
            key.actor.label()
        ),
        LogMessage::EndpointUpdated(updated) => format!(
            "endpoint={} changed={} by={}",
            updated.endpoint.endpoint_id,
            updated.changed.join(","),
            updated.actor.label()
        ),
        LogMessage::EndpointDeleted(deleted) => format!(
            "endpoint={} tenant={} by={}",
            deleted.endpoint_id,
            deleted.tenant_id,
            deleted.actor.label()
        ),
        LogMessage::EndpointCreated(created) => format!(
            "endpoint={} tenant={} url={} enabled={}",
            created.endpoint.endpoint_id,
            created.endpoint.tenant_id,
            created.endpoint.url,
            created.endpoint.enabled
        ),
        LogMessage::EndpointSecretRotated(rotated) => format!(
            "endpoint={} previous_secret_expires_at={}",
            rotated.endpoint_id,
            rotated.previous_secret_expires_at.to_rfc3339()
        ),
        LogMessage::EndpointDisabled(disabled) => format!(
            "endpoint={} reason={:?}",
            disabled.endpoint_id, disabled.reason
        ),
        LogMessage::EndpointCircuitOpened(opened) => format!(
            "endpoint={} until={} consecutive_failures={}",
            opened.endpoint_id,
            opened.until.to_rfc3339(),
            opened.consecutive_failures
        ),
        LogMessage::EndpointCircuitClosed(closed) => format!("endpoint={}", closed.endpoint_id),
        LogMessage::EndpointSloBurning(burning) => format!(
            "endpoint={} alert={} burn_rate={:.1} budget_remaining={:.3}",
            burning.endpoint_id,
            burning.alert.as_str(),
            burning.burn_rate_long,
            burning.budget_remaining
        ),
        LogMessage::ReplayRequested(replay) => format!(
            "event={} deliveries={}",
            replay.event_id,
            replay.deliveries.len()
        ),
        LogMessage::ReplayStarted(started) => format!(
            "replay={} tenant={} mode={} since={} until={}",
            started.replay_id,
            started.tenant_id,
            started.mode.as_str(),
            started.since.to_rfc3339(),
            started.until.to_rfc3339()
        ),
        LogMessage::ReplayProgressed(progressed) => format!(
            "replay={} through_sequence={} events={} deliveries={}",
            progressed.replay_id,
            progressed.through_sequence,
            progressed.events_replayed,
            progressed.deliveries_scheduled
        ),
        LogMessage::ReplayFinished(finished) => format!(
            "replay={} events={} deliveries={}",
            finished.replay_id, finished.events_replayed, finished.deliveries_scheduled
        ),
    }
}

/// Messages asked for in one pull request.
const PULL_BATCH: u64 = 100;

/// Hands every message of `consumer` to `handle`, in stream order, and acknowledges it once
/// `handle` has returned, until `limit` messages have been handled or `stop` completes.
///
/// Messages are pulled in requests of at most 100 (never more than `limit` still allows), so
/// a run that ends at its limit leaves nothing pulled and unhandled; messages pulled when
/// `stop` completes and not yet handled are delivered again after the consumer's `ack_wait`.
/// A message of a type this build does not know is handed over and acknowledged like any
/// other (a subscriber that must not skip anything would stop there instead and be
/// upgraded); one that is not a Herald message at all is terminated, so it is not delivered
/// again. A message is also delivered again when its acknowledgement is lost, so `handle`
/// must tolerate seeing one twice.
pub async fn follow<H>(
    consumer: &PullConsumer,
    limit: Option<u64>,
    stop: impl Future<Output = ()>,
    mut handle: H,
) -> Result<()>
where
    H: FnMut(&Seen),
{
    let mut stop = std::pin::pin!(stop);
    let mut handled = 0;
    loop {
        let wanted = limit.map_or(PULL_BATCH, |limit| (limit - handled).min(PULL_BATCH));
        if wanted == 0 {
            return Ok(());
        }
        let mut batch = consumer
            .batch()
            .max_messages(usize::try_from(wanted).unwrap_or(1))
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .context("cannot pull from the consumer")?;
        loop {
            let next = tokio::select! {
                next = batch.next() => next,
                () = &mut stop => return Ok(()),
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    eprintln!("pull interrupted ({error}); pulling again");
                    break;
                }
                // The request is complete or expired: ask again.
                None => break,
            };
            let info = message
                .info()
                .map_err(|error| anyhow::anyhow!("not a JetStream message: {error}"))?;
            let seen = Seen {
                stream_sequence: info.stream_sequence,
                published: info.published,
                delivered: info.delivered,
                subject: message.subject.to_string(),
                payload: message.payload.to_vec(),
                decoded: LogMessage::decode(&message.payload),
            };
            handle(&seen);
            let acknowledgement = match seen.decoded {
                Ok(_) | Err(DecodeError::UnknownType(_)) => AckKind::Ack,
                Err(_) => AckKind::Term,
            };
            message
                .ack_with(acknowledgement)
                .await
                .map_err(|error| anyhow::anyhow!("cannot acknowledge: {error}"))?;
            handled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_read_from_the_command_line() {
        assert_eq!("all".parse::<Start>().ok(), Some(Start::All));
        assert_eq!("new".parse::<Start>().ok(), Some(Start::New));
        assert_eq!("4711".parse::<Start>().ok(), Some(Start::Sequence(4711)));
        let time = async_nats::datetime::parse_rfc3339("2025-06-02T09:00:00Z").expect("valid");
        assert_eq!(
            "2025-06-02T09:00:00Z".parse::<Start>().ok(),
            Some(Start::Time(time))
        );
        for wrong in ["0", "yesterday", "-1", ""] {
            assert!(wrong.parse::<Start>().is_err(), "{wrong:?} accepted");
        }
    }
}
