//! Performs replays from the log (ADR 0014): for every `replay.started.v1` it reads the
//! tenant's accepted events from the log in order, from `since` to `until`, and puts each
//! selected delivery on the retry queue, due now, so replayed deliveries take the retry path
//! (breakers, budget, records). It records how far it got as `replay.progressed.v1` (the last
//! log sequence handled) at most once a second and `replay.finished.v1` at the end.
//!
//! Crash safety: the started message stays unacknowledged while the replay runs (kept alive
//! with progress acknowledgements). A process that dies stops sending them, so after the ack
//! wait the log hands the message to another process, which looks up the replay's last
//! `replay.progressed.v1` in the log and reads on after its `through_sequence` with its counts.
//! What was scheduled after that progress is scheduled again, under the same JetStream message
//! id (`log-replay-<replay>-<sequence>-<endpoint>`), so within the retry stream's two-minute
//! duplicate window the repeat is dropped; beyond it, a receiver gets it again (at least once).

use crate::retry_queue::TIERS;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::StreamExt;
use herald_log::event_reader::{EventReader, ReadError, ReadFrom};
use herald_log::{DurableConsumer, LogError, LogPublisher};
use herald_schemas::{
    EndpointId, EventAccepted, LogMessage, ReplayFinished, ReplayProgressed, ReplayStarted,
    RetryDue,
};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CONSUMER_NAME: &str = "log_replays";
/// Replays running at once, over all delivery processes.
const MAX_RUNNING: i64 = 8;
/// At most one `replay.progressed.v1` per replay this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The consumer of started replays; a replay whose process stopped telling the log it is at
/// work for `ack_wait` is handed to another process.
pub fn consumer(replays_filter: String, ack_wait: Duration) -> DurableConsumer {
    DurableConsumer {
        name: CONSUMER_NAME.to_owned(),
        filter_subject: replays_filter,
        ack_wait,
        max_ack_pending: MAX_RUNNING,
    }
}

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Append(#[from] LogError),
    #[error("read model: {0}")]
    Database(#[from] sqlx::Error),
}

/// How far a replay got, as its last record in the log says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    through_sequence: u64,
    events_replayed: u64,
    deliveries_scheduled: u64,
}

pub struct LogReplays {
    pub pool: PgPool,
    pub publisher: LogPublisher,
    pub log_stream: jetstream::stream::Stream,
    /// The consumer's ack wait.
    pub ack_wait: Duration,
}

impl LogReplays {
    /// Performs every replay started until `shutdown`; a consumer the log lost is created
    /// again reading from `start`.
    pub async fn run<S, SFut>(
        self: Arc<Self>,
        spec: DurableConsumer,
        consumer: PullConsumer,
        start: S,
        shutdown: CancellationToken,
    ) where
        S: Fn() -> SFut,
        SFut: std::future::Future<Output = DeliverPolicy>,
    {
        let log_stream = self.log_stream.clone();
        spec.consume_durably(&log_stream, consumer, start, &shutdown, |message| {
            let replays = self.clone();
            let shutdown = shutdown.clone();
            async move {
                match LogMessage::decode(&message.payload) {
                    // Each replay runs on its own task: a long one holds up no other.
                    Ok(LogMessage::ReplayStarted(started)) => {
                        tokio::spawn(replays.perform(message, started, shutdown));
                    }
                    Ok(_) => {
                        let _ = message.ack().await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "undecodable message on the replay subject; dropped");
                        let _ = message.ack_with(AckKind::Term).await;
                    }
                }
            }
        })
        .await;
    }

    #[tracing::instrument(skip_all, fields(replay_id = %started.replay_id, tenant_id = %started.tenant_id))]
    async fn perform(
        self: Arc<Self>,
        message: jetstream::Message,
        started: ReplayStarted,
        shutdown: CancellationToken,
    ) {
        let Ok(started_sequence) = message.info().map(|info| info.stream_sequence) else {
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let work = self.replay(&started, started_sequence);
        tokio::pin!(work);
        // Tells the log, well within the ack wait, that the replay is still at work.
        let mut keep_alive = tokio::time::interval(self.ack_wait / 3);
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break Some(outcome),
                _ = keep_alive.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                () = shutdown.cancelled() => break None,
            }
        };
        let kind = match outcome {
            Some(Ok(())) => AckKind::Ack,
            Some(Err(error)) => {
                tracing::warn!(%error, "replay interrupted; it resumes from its last progress");
                // Interrupted mostly by the log failing, when a plain negative acknowledgement
                // can be lost and the replay would wait out the ack wait (ADR 0027).
                herald_log::hand_back::hand_back(message, Duration::from_secs(5));
                return;
            }
            // Another process resumes it from its last progress.
            None => AckKind::Nak(None),
        };
        let _ = message.ack_with(kind).await;
    }

    async fn replay(
        &self,
        started: &ReplayStarted,
        started_sequence: u64,
    ) -> Result<(), ReplayError> {
        let (mut progress, finished) = self.recorded_progress(started, started_sequence).await?;
        if finished {
            return Ok(());
        }
        let namespace = self.publisher.namespace();
        let from = match progress.through_sequence {
            0 => ReadFrom::Time(started.since),
            through => ReadFrom::After(through),
        };
        if progress != Progress::default() {
            tracing::info!(
                through_sequence = progress.through_sequence,
                "replay resumed"
            );
        }
        // Today's endpoints, for `as_now`: read once, when the replay (re)starts.
        let routes =
            herald_store::endpoints::routes_for_tenant(&self.pool, started.tenant_id).await?;
        let mut events = EventReader::open(
            &self.log_stream,
            namespace.event_subject(started.tenant_id),
            from,
            started.until,
        )
        .await?;
        let pace = Duration::from_secs_f64(1.0 / f64::from(started.events_per_second.max(1)));
        let begun = Instant::now();
        let mut replayed_now: u32 = 0;
        let mut last_progress = Instant::now();
        let mut recorded = progress;
        while let Some((sequence, event)) = events.next().await? {
            let subscribed_now: Vec<EndpointId> = routes
                .iter()
                .filter(|route| {
                    herald_rules::routing::subscribes(
                        route.event_types.as_deref(),
                        &event.event_type,
                    )
                })
                .map(|route| route.endpoint_id)
                .collect();
            let targets = started.targets(&event, &subscribed_now);
            if !targets.is_empty() {
                tokio::time::sleep_until(begun + pace * replayed_now).await;
                self.schedule(started, sequence, &event, &targets).await?;
                replayed_now += 1;
                progress.events_replayed += 1;
                progress.deliveries_scheduled += targets.len() as u64;
            }
            progress.through_sequence = sequence;
            if last_progress.elapsed() >= PROGRESS_EVERY && progress != recorded {
                self.record_progress(started, progress).await?;
                recorded = progress;
                last_progress = Instant::now();
            }
        }
        let finished = ReplayFinished {
            replay_id: started.replay_id,
            tenant_id: started.tenant_id,
            through_sequence: progress.through_sequence,
            events_replayed: progress.events_replayed,
            deliveries_scheduled: progress.deliveries_scheduled,
            finished_at: Utc::now(),
        };
        self.publisher
            .publish_once(
                namespace.replay_subject(started.tenant_id),
                &LogMessage::ReplayFinished(finished),
                format!("log-replay-{}-finished", started.replay_id),
            )
            .await?;
        tracing::info!(
            events_replayed = progress.events_replayed,
            deliveries_scheduled = progress.deliveries_scheduled,
            "replay finished"
        );
        Ok(())
    }

    /// Puts the event's selected deliveries on the retry queue, due now.
    async fn schedule(
        &self,
        started: &ReplayStarted,
        sequence: u64,
        event: &EventAccepted,
        targets: &[EndpointId],
    ) -> Result<(), ReplayError> {
        let made = self.attempts_made(event, targets).await?;
        let subject = self.publisher.namespace().retry_subject(TIERS[0].name);
        let due_at = Utc::now();
        for endpoint_id in targets {
            let attempts = made
                .iter()
                .find(|(made_to, _)| *made_to == endpoint_id.as_uuid())
                .map_or(0, |(_, count)| (*count).max(0) as u32);
            let retry = RetryDue {
                event_id: event.event_id,
                endpoint_id: *endpoint_id,
                tenant_id: event.tenant_id,
                event_sequence: sequence,
                attempt_number: replay_attempt_number(attempts),
                due_at,
            };
            self.publisher
                .publish_once(
                    subject.clone(),
                    &LogMessage::RetryDue(retry),
                    format!("log-replay-{}-{sequence}-{endpoint_id}", started.replay_id),
                )
                .await?;
        }
        Ok(())
    }

    /// Attempts the read model counts for the event's deliveries to `targets`.
    async fn attempts_made(
        &self,
        event: &EventAccepted,
        targets: &[EndpointId],
    ) -> Result<Vec<(Uuid, i32)>, sqlx::Error> {
        let endpoint_ids: Vec<Uuid> = targets.iter().map(EndpointId::as_uuid).collect();
        sqlx::query_as(
            "SELECT endpoint_id, attempt_count FROM deliveries \
             WHERE event_id = $1 AND endpoint_id = ANY($2)",
        )
        .bind(event.event_id.as_uuid())
        .bind(&endpoint_ids)
        .fetch_all(&self.pool)
        .await
    }

    async fn record_progress(
        &self,
        started: &ReplayStarted,
        progress: Progress,
    ) -> Result<(), LogError> {
        let message = LogMessage::ReplayProgressed(ReplayProgressed {
            replay_id: started.replay_id,
            tenant_id: started.tenant_id,
            through_sequence: progress.through_sequence,
            events_replayed: progress.events_replayed,
            deliveries_scheduled: progress.deliveries_scheduled,
            progressed_at: Utc::now(),
        });
        self.publisher
            .publish_once(
                self.publisher.namespace().replay_subject(started.tenant_id),
                &message,
                format!(
                    "log-replay-{}-through-{}",
                    started.replay_id, progress.through_sequence
                ),
            )
            .await
            .map(|_| ())
    }

    /// The replay's last progress recorded in the log after its start, and whether it
    /// finished: the tenant's replay subject read from the started message on.
    async fn recorded_progress(
        &self,
        started: &ReplayStarted,
        started_sequence: u64,
    ) -> Result<(Progress, bool), ReplayError> {
        let read_error =
            |what, error: &dyn std::fmt::Display| ReplayError::Read(ReadError::new(what, error));
        let consumer = self
            .log_stream
            .create_consumer(OrderedConfig {
                filter_subject: self.publisher.namespace().replay_subject(started.tenant_id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: started_sequence + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|error| read_error("cannot create a log consumer", &error))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut progress = Progress::default();
        if pending == 0 {
            return Ok((progress, false));
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| read_error("cannot read the log", &error))?;
        while pending > 0 {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(read_error("log reading interrupted", &error)),
                None => return Err(read_error("log reading interrupted", &"stream ended")),
            };
            pending = message.info().map_or(0, |info| info.pending);
            match LogMessage::decode(&message.payload) {
                Ok(LogMessage::ReplayProgressed(recorded))
                    if recorded.replay_id == started.replay_id
                        && recorded.through_sequence >= progress.through_sequence =>
                {
                    progress = Progress {
                        through_sequence: recorded.through_sequence,
                        events_replayed: recorded.events_replayed,
                        deliveries_scheduled: recorded.deliveries_scheduled,
                    };
                }
                Ok(LogMessage::ReplayFinished(finished))
                    if finished.replay_id == started.replay_id =>
                {
                    return Ok((progress, true));
                }
                _ => {}
            }
        }
        Ok((progress, false))
    }
}

/// The number a replayed attempt carries: one more than the attempts the read model counts
/// for the delivery (as single and bulk replays do), and at least 2. A replay repeats a
/// delivery, it is never a first attempt: attempt 1 of an ordered endpoint belongs to its
/// lane, and attempts above 1 are paced by the retry budget (ADR 0014).
fn replay_attempt_number(attempts_made: u32) -> u32 {
    attempts_made.saturating_add(1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_attempt_follows_those_made_and_is_never_a_first_attempt() {
        assert_eq!(replay_attempt_number(0), 2);
        assert_eq!(replay_attempt_number(1), 2);
        assert_eq!(replay_attempt_number(4), 5);
        assert_eq!(replay_attempt_number(u32::MAX), u32::MAX);
    }
}
