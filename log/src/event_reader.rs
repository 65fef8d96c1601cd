//! Reads one tenant's accepted events straight from the log, in log order, over a range of
//! acceptance times: what a replay from the log (ADR 0014) goes through, in query (dry runs)
//! and in delivery (replays).

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_schemas::{EventAccepted, LogMessage};

/// How far apart an event's `accepted_at` and the moment the log appended it may be: the
/// reader starts this much before `since` and reads on this much after `until`, so that no
/// event accepted in the range is missed whatever the append order of concurrent writers.
pub const APPEND_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// Where a read starts.
#[derive(Clone, Copy, Debug)]
pub enum ReadFrom {
    /// With the first event appended around `since` (less [`APPEND_MARGIN`]).
    Time(DateTime<Utc>),
    /// Right after this log stream sequence (a resumed replay).
    After(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ReadError {
    what: &'static str,
    message: String,
}

impl ReadError {
    pub fn new(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            what,
            message: error.to_string(),
        }
    }
}

/// The tenant's `event.accepted.v1` messages from a start to the end of the log, or to the
/// first one appended after `until` + [`APPEND_MARGIN`].
pub struct EventReader {
    messages: Option<Ordered>,
    pending: u64,
    stop_after: time::OffsetDateTime,
}

fn offset_time(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl EventReader {
    pub async fn open(
        log_stream: &jetstream::stream::Stream,
        events_subject: String,
        from: ReadFrom,
        until: DateTime<Utc>,
    ) -> Result<Self, ReadError> {
        let deliver_policy = match from {
            ReadFrom::Time(since) => DeliverPolicy::ByStartTime {
                start_time: offset_time(since - APPEND_MARGIN),
            },
            ReadFrom::After(sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
        };
        let consumer = log_stream
            .create_consumer(OrderedConfig {
                filter_subject: events_subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| ReadError::new("cannot create a log consumer", error))?;
        let pending = consumer.cached_info().num_pending;
        let messages = match pending {
            0 => None,
            _ => Some(
                consumer
                    .messages()
                    .await
                    .map_err(|error| ReadError::new("cannot read the log", error))?,
            ),
        };
        Ok(Self {
            messages,
            pending,
            stop_after: offset_time(until + APPEND_MARGIN),
        })
    }

    /// The next accepted event and its log stream sequence; `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<(u64, EventAccepted)>, ReadError> {
        loop {
            let Some(messages) = self.messages.as_mut().filter(|_| self.pending > 0) else {
                return Ok(None);
            };
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(ReadError::new("log reading interrupted", error)),
                None => return Err(ReadError::new("log reading interrupted", "stream ended")),
            };
            let info = message
                .info()
                .map_err(|error| ReadError::new("log message without metadata", error))?;
            self.pending = info.pending;
            if info.published > self.stop_after {
                self.pending = 0;
                return Ok(None);
            }
            let sequence = info.stream_sequence;
            if let Ok(LogMessage::EventAccepted(event)) = LogMessage::decode(&message.payload) {
                return Ok(Some((sequence, event)));
            }
        }
    }
}
