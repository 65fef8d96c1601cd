//! Herald's JetStream I/O shared by every service: the stream definitions and a publisher
//! that returns only once the log has acknowledged a message (so it is durable).

use async_nats::jetstream::{self, stream};
use herald_schemas::{LogMessage, Namespace};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("could not publish to the log: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("could not create or update stream `{name}`: {reason}")]
    Stream { name: String, reason: String },
}

pub mod outbox;

/// Appends messages to the log.
#[derive(Clone)]
pub struct LogPublisher {
    jetstream: jetstream::Context,
    namespace: Namespace,
}

impl LogPublisher {
    pub fn new(jetstream: jetstream::Context, namespace: Namespace) -> Self {
        Self {
            jetstream,
            namespace,
        }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Publishes and waits for the stream's acknowledgement. Many concurrent callers share
    /// one connection, so acknowledgements are pipelined rather than taken one at a time.
    pub async fn publish(&self, subject: String, message: &LogMessage) -> Result<u64, LogError> {
        let ack = self
            .jetstream
            .publish(subject, message.encode().into())
            .await?
            .await?;
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
    pub async fn publish_bytes_once(
        &self,
        subject: String,
        payload: Vec<u8>,
        message_id: String,
    ) -> Result<u64, LogError> {
        use async_nats::jetstream::message::PublishMessage;
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
        Ok(ack.sequence)
    }
}

/// A durable pull consumer with explicit acknowledgements, created if it does not exist.
pub async fn durable_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
    filter_subject: String,
    ack_wait: Duration,
    max_ack_pending: i64,
) -> Result<jetstream::consumer::PullConsumer, String> {
    stream
        .get_or_create_consumer(
            name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| format!("consumer {name}: {error}"))
}

/// Hands every message of a durable pull consumer to `handle`, in order, until `shutdown`;
/// reconnects after errors. Pull requests are short-lived (5 s) so that those of a stopped
/// process do not linger at the server and swallow redeliveries.
pub async fn consume<F, Fut>(
    consumer: &jetstream::consumer::PullConsumer,
    what: &str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut handle: F,
) where
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
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                () = shutdown.cancelled() => return,
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
    }
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
pub async fn ensure_streams(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    replicas: usize,
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
        num_replicas: replicas,
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
        let name = config.name.clone();
        let stream_error = |reason: String| LogError::Stream {
            name: name.clone(),
            reason,
        };
        match jetstream.get_stream(&config.name).await {
            Ok(_) => {
                jetstream
                    .update_stream(&config)
                    .await
                    .map_err(|error| stream_error(error.to_string()))?;
            }
            Err(_) => {
                jetstream
                    .create_stream(config.clone())
                    .await
                    .map_err(|error| stream_error(error.to_string()))?;
                tracing::info!(stream = %config.name, "created stream");
            }
        }
    }
    Ok(())
}
