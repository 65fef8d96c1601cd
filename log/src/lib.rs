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
}

/// Creates the streams, or brings their configuration up to date. Idempotent.
pub async fn ensure_streams(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
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
        ..Default::default()
    };
    let retries = stream::Config {
        name: namespace.retry_stream(),
        description: Some("Herald's scheduled retries, one subject per delay tier".into()),
        subjects: vec![namespace.retries_filter()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
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
