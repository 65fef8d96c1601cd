//! Log writes nobody waits on at once — attempt records, acknowledgements of messages already
//! dealt with — held for a moment and sent together.
//!
//! Below saturation each of these writes otherwise travels alone: a socket write, and a
//! wakeup of nats-server and of Herald's connection task, which cost both more than the
//! message itself (docs/PERFORMANCE.md, "Efficiency by load"). Held together for `linger`,
//! a few milliseconds' writes share one socket write and one wakeup each side, and the
//! server's answers (publish acknowledgements, the consumers' deliveries of what was
//! appended) come back grouped too. What waits on them — an event's acknowledgement, the
//! projections — is at most `linger` later; a webhook's delivery is not: the request has
//! been made before its record is written (ADR 0025).

use crate::LogError;
use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishError, PublishErrorKind},
};
use std::future::IntoFuture;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A group is sent at once when it reaches this many writes, whatever `linger` says.
const MAX_GROUP: usize = 512;

/// The JetStream context's publish timeout as Herald uses it (the client's default): a
/// group's appends wait this long for their acknowledgements from when the group was sent.
pub const ACKNOWLEDGEMENT_TIMEOUT: Duration = Duration::from_secs(5);

enum Write {
    Append {
        subject: String,
        payload: Vec<u8>,
        appended: oneshot::Sender<Result<u64, LogError>>,
    },
    Ack(Box<jetstream::Message>),
    Flush(oneshot::Sender<()>),
}

/// Where grouped writes are queued; the task that sends them runs until every handle is gone.
#[derive(Clone)]
pub struct GroupedWrites {
    queue: mpsc::UnboundedSender<Write>,
}

#[derive(Debug, thiserror::Error)]
#[error("the log writer stopped before the message was appended")]
pub struct WriterStopped;

impl GroupedWrites {
    /// Starts the sending task on the current runtime.
    /// `acknowledgement_timeout` is `jetstream`'s publish timeout
    /// ([`ACKNOWLEDGEMENT_TIMEOUT`] unless it was given another).
    pub fn start(
        jetstream: jetstream::Context,
        linger: Duration,
        acknowledgement_timeout: Duration,
    ) -> Self {
        let (queue, writes) = mpsc::unbounded_channel();
        tokio::spawn(send_in_groups(
            jetstream,
            writes,
            linger,
            acknowledgement_timeout,
        ));
        Self { queue }
    }

    /// Appends `payload` with the next group; resolves once the stream has acknowledged it.
    pub async fn append(&self, subject: String, payload: Vec<u8>) -> Result<u64, LogError> {
        let (appended, outcome) = oneshot::channel();
        self.queue
            .send(Write::Append {
                subject,
                payload,
                appended,
            })
            .map_err(|_| LogError::WriterStopped(WriterStopped))?;
        outcome
            .await
            .unwrap_or(Err(LogError::WriterStopped(WriterStopped)))
    }

    /// Acknowledges `message` with the next group. A lost acknowledgement costs a
    /// redelivery after the consumer's ack wait, as it would sent alone.
    pub async fn ack(&self, message: jetstream::Message) {
        if let Err(mpsc::error::SendError(Write::Ack(message))) =
            self.queue.send(Write::Ack(Box::new(message)))
        {
            ack_alone(&message).await;
        }
    }

    /// Resolves once everything queued before it has been handed to the connection (on
    /// shutdown, before the connection is flushed and closed).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Write::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Acknowledges `message` at once; a lost acknowledgement costs a redelivery after the
/// consumer's ack wait.
pub(crate) async fn ack_alone(message: &jetstream::Message) {
    if let Err(error) = message.ack().await {
        tracing::debug!(%error, "acknowledgement lost; the message comes again");
    }
}

async fn send_in_groups(
    jetstream: jetstream::Context,
    mut writes: mpsc::UnboundedReceiver<Write>,
    linger: Duration,
    acknowledgement_timeout: Duration,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while writes.recv_many(&mut group, MAX_GROUP).await > 0 {
        let flush_asked = group.iter().any(|write| matches!(write, Write::Flush(_)));
        if !flush_asked && group.len() < MAX_GROUP && !linger.is_zero() {
            tokio::time::sleep(linger).await;
            while group.len() < MAX_GROUP {
                match writes.try_recv() {
                    Ok(write) => group.push(write),
                    Err(_) => break,
                }
            }
        }
        send(&jetstream, &mut group, acknowledgement_timeout).await;
    }
}

/// Hands a group's writes to the connection back to back, so that its task writes them to
/// the socket together, and answers the appends as their acknowledgements arrive.
async fn send(
    jetstream: &jetstream::Context,
    group: &mut Vec<Write>,
    acknowledgement_timeout: Duration,
) {
    let mut awaiting: Vec<(PublishAckFuture, oneshot::Sender<Result<u64, LogError>>)> = Vec::new();
    let mut flushed = Vec::new();
    let started = std::time::Instant::now();
    for write in group.drain(..) {
        match write {
            Write::Append {
                subject,
                payload,
                appended,
            } => match jetstream.publish(subject, payload.into()).await {
                Ok(acknowledgement) => awaiting.push((acknowledgement, appended)),
                Err(error) => {
                    let _ = appended.send(Err(error.into()));
                }
            },
            Write::Ack(message) => ack_alone(&message).await,
            Write::Flush(done) => flushed.push(done),
        }
    }
    for done in flushed {
        let _ = done.send(());
    }
    if awaiting.is_empty() {
        return;
    }
    // Awaited apart, so that the next group is not held up by this one's acknowledgements.
    // In order (the server answers a connection's appends in order, so once the first has
    // come the rest mostly have too), but against one deadline counted from when the group
    // was sent: an acknowledgement's own timeout runs from when it is first awaited, so a
    // group the log never answers (its server gone) would otherwise fail one timeout after
    // another — a dozen records, a minute.
    let deadline = tokio::time::Instant::from_std(started) + acknowledgement_timeout;
    tokio::spawn(async move {
        for (acknowledgement, appended) in awaiting {
            let outcome = match tokio::time::timeout_at(deadline, acknowledgement.into_future())
                .await
            {
                Ok(acknowledged) => acknowledged.map(|ack| ack.sequence).map_err(LogError::from),
                Err(_) => Err(LogError::from(PublishError::new(
                    PublishErrorKind::TimedOut,
                ))),
            };
            if outcome.is_ok() {
                herald_metrics::metrics().log_published(started.elapsed());
            }
            let _ = appended.send(outcome);
        }
    });
}
