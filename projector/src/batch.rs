//! Pulls log messages in batches: waits for a first message, then takes whatever else
//! arrives within a short window, up to a maximum. Batching is what makes the projections
//! cheap: one transaction or one insert per batch, one acknowledgement per batch.

use crate::error::ProjectorError;
use crate::reader_watch::{ReaderWatch, Reopen};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub enum Pulled {
    Batch(Vec<Message>),
    /// The message stream ended or failed; open a new one.
    Interrupted,
    Shutdown,
}

/// Reads the log in order from `start_sequence`, with no acknowledgements: the projection's
/// own checkpoint, stored with its effect, is the only record of how far it got. After a
/// crash or restart it starts again right after that checkpoint, so nothing is skipped and
/// nothing is applied twice, whatever the server thought was delivered.
#[tracing::instrument(
    skip_all,
    fields(filter_subject = %filter_subject, start_sequence = start_sequence)
)]
pub async fn read_from(
    log_stream: &jetstream::stream::Stream,
    filter_subject: String,
    start_sequence: u64,
) -> Result<Ordered, ProjectorError> {
    let consumer = log_stream
        .create_consumer(OrderedConfig {
            filter_subject,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start_sequence.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|error| ProjectorError::log("cannot create a log consumer", error))?;
    consumer
        .messages()
        .await
        .map_err(|error| ProjectorError::log("cannot read the log", error))
}

/// A projection that claims to be further than the log has been fed from another log (the
/// stream was recreated, or two installations share a database): projecting on would
/// silently skip messages, so refuse, loudly.
#[tracing::instrument(
    skip_all,
    fields(projection = %projection, applied_through = applied_through),
    err(Display)
)]
pub async fn ensure_not_ahead(
    log_stream: &jetstream::stream::Stream,
    applied_through: u64,
    projection: &str,
) -> Result<(), ProjectorError> {
    let mut log_stream = log_stream.clone();
    let last_sequence = log_stream
        .info()
        .await
        .map_err(|error| ProjectorError::log("cannot read stream info", error))?
        .state
        .last_sequence;
    if applied_through > last_sequence {
        return Err(ProjectorError::AheadOfLog {
            projection: projection.to_owned(),
            applied_through,
            last_sequence,
        });
    }
    Ok(())
}

/// Most payload bytes a batch gathers, whatever `max` says: an event may carry up to
/// `HERALD_MAX_BODY_BYTES` (256 KiB by default), and a projection that lags fills its batch at
/// once, so a bound on messages alone would let one batch of large events take gigabytes.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// Waits for a first message, then takes what else arrives within `window`, up to `max`
/// messages or `max_bytes` of payload (the message that reaches it included). Interrupted if
/// `reader` is asked to reopen while waiting for the first.
pub async fn next_batch(
    messages: &mut Ordered,
    max: usize,
    max_bytes: usize,
    window: Duration,
    shutdown: &CancellationToken,
    reader: &ReaderWatch,
) -> Pulled {
    let first = tokio::select! {
        next = messages.next() => next,
        () = shutdown.cancelled() => return Pulled::Shutdown,
        why = reader.reopen_asked() => {
            match why {
                Reopen::Stalled => tracing::warn!(
                    stalled_after = ?crate::reader_watch::STALLED_AFTER,
                    "{}; reading again from the checkpoint", why.as_str()
                ),
                Reopen::Reconnected => {
                    tracing::info!("{}; reading again from the checkpoint", why.as_str())
                }
            }
            return Pulled::Interrupted;
        }
    };
    let first = match first {
        Some(Ok(message)) => message,
        Some(Err(error)) => {
            tracing::warn!(%error, "log pull interrupted");
            return Pulled::Interrupted;
        }
        None => return Pulled::Interrupted,
    };
    let mut batch = Vec::with_capacity(max.min(4096));
    let mut bytes = first.payload.len();
    batch.push(first);
    let deadline = Instant::now() + window;
    while batch.len() < max && bytes < max_bytes {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(message))) => {
                bytes += message.payload.len();
                batch.push(message);
            }
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "log pull interrupted mid-batch");
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    Pulled::Batch(batch)
}

pub fn sequence(message: &Message) -> u64 {
    message.info().map(|info| info.stream_sequence).unwrap_or(0)
}

/// For rebuilds: reads the log's messages under `filter_subject` after `applied` through
/// `target` and hands them to `apply` batch by batch, with the sequence applied through
/// before the batch; `apply` answers how far it got. Returns where it got.
pub(crate) async fn apply_log_through(
    log_stream: &jetstream::stream::Stream,
    filter_subject: &str,
    mut applied: u64,
    target: u64,
    max: usize,
    mut apply: impl AsyncFnMut(&[Message], u64) -> Result<u64, ProjectorError>,
) -> Result<u64, ProjectorError> {
    if applied >= target {
        return Ok(applied);
    }
    let window = Duration::from_millis(50);
    let never = CancellationToken::new();
    let unwatched = ReaderWatch::default();
    let mut messages = read_from(log_stream, filter_subject.to_owned(), applied + 1).await?;
    while applied < target {
        let pulled = next_batch(
            &mut messages,
            max,
            MAX_BATCH_BYTES,
            window,
            &never,
            &unwatched,
        )
        .await;
        let mut batch = match pulled {
            Pulled::Batch(batch) => batch,
            Pulled::Interrupted | Pulled::Shutdown => {
                messages = read_from(log_stream, filter_subject.to_owned(), applied + 1).await?;
                continue;
            }
        };
        batch.retain(|message| sequence(message) <= target);
        let Some(through) = batch.last().map(sequence) else {
            break;
        };
        applied = apply(&batch, applied).await?.max(through);
    }
    Ok(applied)
}
