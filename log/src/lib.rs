//! Herald's JetStream I/O shared by every service: the stream definitions and a publisher
//! that returns only once the log has acknowledged a message (so it is durable).

use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use herald_schemas::{LogMessage, Namespace};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("could not publish to the log: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("could not create or update stream `{name}`: {source}")]
    Stream {
        name: String,
        source: jetstream::context::CreateStreamError,
    },
    #[error("could not create consumer `{name}`: {source}")]
    Consumer {
        name: String,
        source: jetstream::stream::ConsumerError,
    },
    #[error(transparent)]
    WriterStopped(#[from] grouped_writes::WriterStopped),
}

impl LogError {
    /// Whether the same call may succeed later: the server was unreachable, slow, busy or
    /// electing a leader. Otherwise it refused what was asked (a message too large, a wrong
    /// expected sequence, an invalid stream or consumer definition), and asking again is
    /// refused again.
    pub fn is_retryable(&self) -> bool {
        use jetstream::context::{CreateStreamErrorKind, PublishErrorKind};
        use jetstream::stream::ConsumerErrorKind;
        match self {
            Self::Publish(error) => !matches!(
                error.kind(),
                PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::WrongLastSequence
                    | PublishErrorKind::MaxPayloadExceeded
            ),
            Self::Stream { source, .. } => matches!(
                source.kind(),
                CreateStreamErrorKind::TimedOut
                    | CreateStreamErrorKind::JetStreamUnavailable
                    | CreateStreamErrorKind::Response
            ),
            Self::Consumer { source, .. } => match source.kind() {
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => true,
                ConsumerErrorKind::JetStream(error) => when_available::is_unavailable(&error),
                _ => false,
            },
            Self::WriterStopped(_) => true,
        }
    }

    /// Whether the log certainly did not take the message: no stream was there to take it
    /// (its leader is being elected; the server answered "no responders"), or the client
    /// never sent it. A timeout or a connection lost after sending leaves it unknown.
    pub fn surely_not_appended(&self) -> bool {
        use jetstream::context::PublishErrorKind;
        match self {
            Self::Publish(error) => matches!(
                error.kind(),
                PublishErrorKind::StreamNotFound | PublishErrorKind::MaxAckPending
            ),
            // The writer may have stopped after sending it.
            Self::WriterStopped(_) | Self::Stream { .. } | Self::Consumer { .. } => false,
        }
    }
}

pub mod doubling;
pub mod event_reader;
pub mod grouped_writes;
pub mod hand_back;
pub mod outbox;
pub mod when_available;

/// Appends messages to the log.
#[derive(Clone)]
pub struct LogPublisher {
    jetstream: jetstream::Context,
    namespace: Namespace,
    grouped: Option<grouped_writes::GroupedWrites>,
}

impl LogPublisher {
    pub fn new(jetstream: jetstream::Context, namespace: Namespace) -> Self {
        Self {
            jetstream,
            namespace,
            grouped: None,
        }
    }

    /// Sends the writes of [`publish_grouped`](Self::publish_grouped) and
    /// [`ack_grouped`](Self::ack_grouped) in groups held up to `linger` (none if zero); starts
    /// the task that sends them on the current runtime.
    pub fn with_grouped_writes(self, linger: Duration) -> Self {
        let grouped = (!linger.is_zero()).then(|| {
            grouped_writes::GroupedWrites::start(
                self.jetstream.clone(),
                linger,
                grouped_writes::ACKNOWLEDGEMENT_TIMEOUT,
            )
        });
        Self { grouped, ..self }
    }

    /// Like [`publish`](Self::publish), sent with other writes nobody waits on at once
    /// (`grouped_writes`): for records whose appending only holds up an acknowledgement.
    pub async fn publish_grouped(
        &self,
        subject: String,
        message: &LogMessage,
    ) -> Result<u64, LogError> {
        match &self.grouped {
            Some(grouped) => grouped.append(subject, message.encode()).await,
            None => self.publish(subject, message).await,
        }
    }

    /// Acknowledges a message read from a consumer, with the grouped writes.
    pub async fn ack_grouped(&self, message: jetstream::Message) {
        match &self.grouped {
            Some(grouped) => grouped.ack(message).await,
            None => grouped_writes::ack_alone(&message).await,
        }
    }

    /// Hands every grouped write queued so far to the connection (before it is flushed and
    /// closed on shutdown).
    pub async fn flush_grouped(&self) {
        if let Some(grouped) = &self.grouped {
            grouped.flush().await;
        }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Whether the connection to the log is up now (an append may still fail: the stream may
    /// be electing a leader).
    pub fn is_connected(&self) -> bool {
        self.jetstream.client().connection_state() == async_nats::connection::State::Connected
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Publishes and waits for the stream's acknowledgement. Many concurrent callers share
    /// one connection, so acknowledgements are pipelined rather than taken one at a time.
    #[tracing::instrument(level = "debug", skip_all, fields(%subject), err(level = "debug"))]
    pub async fn publish(&self, subject: String, message: &LogMessage) -> Result<u64, LogError> {
        let started = std::time::Instant::now();
        let ack = self
            .jetstream
            .publish(subject, message.encode().into())
            .await?
            .await?;
        herald_metrics::metrics().log_published(started.elapsed());
        Ok(ack.sequence)
    }

    /// Like [`publish`](Self::publish), but the stream keeps one copy of every message
    /// published with the same `message_id` within its duplicate window: a repeat of an append
    /// whose outcome was unknown (the acknowledgement was lost, the process died) is then
    /// harmless.
    pub async fn publish_once(
        &self,
        subject: String,
        message: &LogMessage,
        message_id: String,
    ) -> Result<u64, LogError> {
        self.publish_bytes_once(subject, message.encode(), message_id)
            .await
    }

    /// [`publish_once`](Self::publish_once) for a message already encoded.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(%subject, %message_id),
        err(level = "debug")
    )]
    pub async fn publish_bytes_once(
        &self,
        subject: String,
        payload: Vec<u8>,
        message_id: String,
    ) -> Result<u64, LogError> {
        use async_nats::jetstream::message::PublishMessage;
        let started = std::time::Instant::now();
        let ack = self
            .jetstream
            .send_publish(
                subject,
                PublishMessage::build()
                    .payload(payload.into())
                    .message_id(message_id),
            )
            .await?
            .await?;
        herald_metrics::metrics().log_published(started.elapsed());
        Ok(ack.sequence)
    }
}

/// A durable pull consumer with explicit acknowledgements: what it is, so that it can be
/// created at start and created again should the server lose it.
#[derive(Clone, Debug)]
pub struct DurableConsumer {
    pub name: String,
    pub filter_subject: String,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
}

impl DurableConsumer {
    /// Binds to the consumer, creating it to read from `start` if the server has none.
    #[tracing::instrument(skip_all, fields(consumer = %self.name), err(level = "debug"))]
    pub async fn open(
        &self,
        stream: &jetstream::stream::Stream,
        start: DeliverPolicy,
    ) -> Result<PullConsumer, LogError> {
        stream
            .get_or_create_consumer(
                &self.name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(self.name.clone()),
                    filter_subject: self.filter_subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_ack_pending: self.max_ack_pending,
                    deliver_policy: start,
                    ..Default::default()
                },
            )
            .await
            .map_err(|source| LogError::Consumer {
                name: self.name.clone(),
                source,
            })
    }

    /// [`open`](Self::open), tried again while the log is unavailable (a server restarting, a
    /// leader being elected); `Ok(None)` if `shutdown` came first.
    pub async fn open_when_available(
        &self,
        stream: &jetstream::stream::Stream,
        start: DeliverPolicy,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<PullConsumer>, LogError> {
        when_available::when_available(&self.name, shutdown, LogError::is_retryable, || {
            self.open(stream, start)
        })
        .await
    }

    /// Hands every message to `handle`, as [`consume`] does, and creates the consumer again
    /// (reading from what `start` says then) whenever the server has lost it, until
    /// `shutdown`.
    pub async fn consume_durably<F, Fut, S, SFut>(
        &self,
        stream: &jetstream::stream::Stream,
        mut consumer: PullConsumer,
        start: S,
        shutdown: &tokio_util::sync::CancellationToken,
        mut handle: F,
    ) where
        F: FnMut(jetstream::Message) -> Fut,
        Fut: std::future::Future<Output = ()>,
        S: Fn() -> SFut,
        SFut: std::future::Future<Output = DeliverPolicy>,
    {
        while let Consumed::ConsumerLost =
            consume(&consumer, &self.name, shutdown, &mut handle).await
        {
            loop {
                let start = start().await;
                tracing::error!(consumer = %self.name, ?start, "the log lost this consumer; creating it again");
                match self.open(stream, start).await {
                    Ok(created) => {
                        consumer = created;
                        break;
                    }
                    Err(error) => tracing::warn!(%error, "consumer not created; retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// How long [`is_lost`] waits for the server's answer. A server that knows nothing of the
/// consumer says so at once; no answer means an election or a reconnection is under way, and
/// pulling again sooner resumes sooner than waiting out the request's own timeout.
const LOST_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the server no longer knows `consumer` (deleted, or lost with the server's state),
/// as opposed to being unreachable for a while.
pub async fn is_lost(consumer: &PullConsumer) -> bool {
    use jetstream::context::ConsumerInfoErrorKind;
    matches!(
        tokio::time::timeout(LOST_CHECK_TIMEOUT, consumer.get_info()).await,
        Ok(Err(error)) if error.kind() == ConsumerInfoErrorKind::NotFound
    )
}

/// Why [`consume`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Consumed {
    Shutdown,
    /// The server no longer knows the consumer: it must be created again.
    ConsumerLost,
}

/// Hands every message of a durable pull consumer to `handle`, in order, until `shutdown`;
/// reconnects after errors. Pull requests are short-lived (5 s) so that those of a stopped
/// process do not linger at the server and swallow redeliveries.
pub async fn consume<F, Fut>(
    consumer: &PullConsumer,
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut handle: F,
) -> Consumed
where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::StreamExt;
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
                tracing::warn!(%error, what, "cannot pull from the log; retrying");
                if is_lost(consumer).await {
                    return Consumed::ConsumerLost;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return Consumed::Shutdown,
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                () = shutdown.cancelled() => return Consumed::Shutdown,
            };
            match next {
                Some(Ok(message)) => handle(message).await,
                Some(Err(error)) => {
                    tracing::warn!(%error, what, "pull from the log interrupted");
                    break;
                }
                None => break,
            }
        }
        // Drop the stream before anything else awaits: while it lives, its task sends pull
        // requests of its own (on reconnecting, or when one expires), and what the log hands
        // to those waits unread in its inbox, to come back only after the consumer's ack wait.
        // After a server loss that was a minute without deliveries.
        drop(messages);
        if is_lost(consumer).await {
            return Consumed::ConsumerLost;
        }
    }
    Consumed::Shutdown
}

/// Calls `apply` with every decodable message published on `subject` (a core NATS
/// subscription: live changes only, no replay) until `shutdown`. Used to keep caches in step
/// with configuration changes made by other processes; the caches' TTL covers anything missed.
pub async fn follow(
    nats: async_nats::Client,
    subject: String,
    shutdown: tokio_util::sync::CancellationToken,
    mut apply: impl FnMut(LogMessage),
) {
    use futures::StreamExt;
    let mut messages = match nats.subscribe(subject).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "cannot follow configuration changes; relying on the cache TTL");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            () = shutdown.cancelled() => break,
        };
        let Some(next) = next else { break };
        if let Ok(message) = LogMessage::decode(&next.payload) {
            apply(message);
        }
    }
}

/// Creates the streams, or brings their configuration up to date. Idempotent.
///
/// `replicas` is how many servers of a JetStream cluster keep each stream (1 on a single
/// server, 3 in production). Consumers created without a replica count of their own inherit
/// the stream's, so the durable consumers survive the loss of a server as the streams do.
/// `log_max_age` is how long the log keeps a message (zero: for ever); the retry stream only
/// holds what is still to do and has no age limit.
#[tracing::instrument(skip_all, fields(%namespace, replicas, ?log_max_age), err)]
pub async fn ensure_streams(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    replicas: usize,
    log_max_age: Duration,
) -> Result<(), LogError> {
    let log = stream::Config {
        name: namespace.log_stream(),
        description: Some(
            "Herald's append-only log: events, attempts, configuration changes".into(),
        ),
        subjects: namespace.log_subjects(),
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        max_age: log_max_age,
        num_replicas: replicas,
        // Retries read their event back by sequence; a direct get is answered by the stream
        // itself, without the JetStream API's JSON and base64 round trip.
        allow_direct: true,
        ..Default::default()
    };
    let retries = stream::Config {
        name: namespace.retry_stream(),
        description: Some("Herald's scheduled retries, one subject per delay tier".into()),
        subjects: vec![namespace.retries_filter()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    for config in [log, retries] {
        let stream_error = |source| LogError::Stream {
            name: config.name.clone(),
            source,
        };
        match jetstream.get_stream(&config.name).await {
            Ok(_) => {
                jetstream
                    .update_stream(&config)
                    .await
                    .map_err(stream_error)?;
            }
            Err(_) => {
                jetstream
                    .create_stream(config.clone())
                    .await
                    .map_err(stream_error)?;
                tracing::info!(stream = %config.name, "created stream");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetstream::context::{CreateStreamError, CreateStreamErrorKind, PublishErrorKind};
    use jetstream::stream::{ConsumerError, ConsumerErrorKind};

    #[test]
    fn an_unreachable_or_busy_server_is_retryable_a_refused_request_is_not() {
        let publish = |kind| LogError::Publish(jetstream::context::PublishError::new(kind));
        assert!(publish(PublishErrorKind::TimedOut).is_retryable());
        assert!(publish(PublishErrorKind::BrokenPipe).is_retryable());
        assert!(publish(PublishErrorKind::StreamNotFound).is_retryable());
        assert!(!publish(PublishErrorKind::MaxPayloadExceeded).is_retryable());
        assert!(!publish(PublishErrorKind::WrongLastSequence).is_retryable());
        let stream = |kind| LogError::Stream {
            name: "LOG".to_owned(),
            source: CreateStreamError::new(kind),
        };
        assert!(stream(CreateStreamErrorKind::TimedOut).is_retryable());
        assert!(!stream(CreateStreamErrorKind::InvalidStreamName).is_retryable());
        let consumer = |kind| LogError::Consumer {
            name: "first".to_owned(),
            source: ConsumerError::new(kind),
        };
        assert!(consumer(ConsumerErrorKind::Request).is_retryable());
        assert!(!consumer(ConsumerErrorKind::InvalidName).is_retryable());
        let answered = |code: usize, err_code: u64, description: &str| {
            let error: jetstream::Error = serde_json::from_value(serde_json::json!({
                "code": code, "err_code": err_code, "description": description
            }))
            .expect("the API's error shape");
            consumer(ConsumerErrorKind::JetStream(error))
        };
        assert!(answered(503, 10008, "JetStream system temporarily unavailable").is_retryable());
        assert!(!answered(400, 10013, "consumer name in subject does not match").is_retryable());
    }

    #[test]
    fn only_an_append_nobody_took_is_surely_not_appended() {
        let publish = |kind| LogError::Publish(jetstream::context::PublishError::new(kind));
        assert!(publish(PublishErrorKind::StreamNotFound).surely_not_appended());
        assert!(publish(PublishErrorKind::MaxAckPending).surely_not_appended());
        // Sent, and then nothing heard: it may be in the log.
        assert!(!publish(PublishErrorKind::TimedOut).surely_not_appended());
        assert!(!publish(PublishErrorKind::BrokenPipe).surely_not_appended());
        assert!(!publish(PublishErrorKind::Other).surely_not_appended());
        assert!(!LogError::WriterStopped(grouped_writes::WriterStopped).surely_not_appended());
    }
}
