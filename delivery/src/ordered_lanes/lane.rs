//! One ordered endpoint's lane: reads its tenant's events in log order and delivers those
//! routed to the endpoint one after the other, each until it reaches a final outcome.

use super::leases::{Head, LaneState};
use super::{OrderedLanes, BACKOFF, RENEW_EVERY};
use crate::attempt::{DeliveryJob, JobOutcome, Sequencing};
use crate::endpoint_concurrency::{Busy, EndpointConcurrency, EndpointSlot};
use crate::stopping::pause;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_log::LogError;
use herald_schemas::{DeferralReason, EndpointId, EventAccepted, LogMessage, TenantId};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How far before an endpoint's creation its lane starts reading, for clock differences
/// between the process that created it and those that accepted its first events.
const CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(60);

/// The lane's write was refused: another process holds it now, or this one is stopping.
struct LaneLost;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the tenant's events: {0}")]
struct LogUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>);

/// How a lane makes its deliveries: it holds the one at its head until it is finished, so
/// waits and retries stay with the lane (and its saved position) instead of going to the
/// retry queue, where something could overtake them.
struct InLane;

impl Sequencing for InLane {
    fn leaves_to_lane(&self, _job: &DeliveryJob, _endpoint_ordered: bool) -> bool {
        false
    }

    /// A lane holds one delivery at most: the retry budget, which bounds retries in
    /// flight, does not apply.
    fn charges_retry_budget(&self, _job: &DeliveryJob) -> bool {
        false
    }

    /// The lane's next delivery waits for this one's record: held for a group, every
    /// delivery of an ordered endpoint would take that much longer.
    fn record_may_wait(&self) -> bool {
        false
    }

    /// Waits for the slot: a deferral would let the next delivery overtake this one.
    async fn endpoint_slot(
        &self,
        concurrency: &EndpointConcurrency,
        endpoint_id: EndpointId,
    ) -> Result<Option<EndpointSlot>, Busy> {
        Ok(concurrency.acquire_waiting(endpoint_id).await)
    }

    async fn defer(
        &self,
        _job: &DeliveryJob,
        _until: DateTime<Utc>,
        _reason: Option<DeferralReason>,
    ) -> Result<(), LogError> {
        Ok(())
    }

    async fn schedule_retry(
        &self,
        _job: &DeliveryJob,
        _due_at: DateTime<Utc>,
    ) -> Result<(), LogError> {
        Ok(())
    }
}

pub(super) struct Lane {
    pub lanes: Arc<OrderedLanes>,
    pub state: LaneState,
}

impl Lane {
    pub async fn run(mut self, stop: CancellationToken, hard_stop: CancellationToken) {
        let endpoint_id = EndpointId(self.state.endpoint_id);
        let subject = self
            .lanes
            .namespace
            .event_subject(TenantId(self.state.tenant_id));
        tracing::debug!(
            delivered_through = self.state.delivered_through,
            "lane started"
        );
        while !stop.is_cancelled() {
            let mut messages = match self.read_events(&subject).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "lane cannot read the log");
                    pause(&stop, BACKOFF).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = stop.cancelled() => return,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "lane's log reading interrupted");
                        break;
                    }
                    None => break,
                };
                let Ok(info) = message.info() else { continue };
                let sequence = info.stream_sequence as i64;
                if sequence <= self.state.delivered_through {
                    continue;
                }
                let event = match LogMessage::decode(&message.payload) {
                    Ok(LogMessage::EventAccepted(event)) => event,
                    _ => continue,
                };
                if !event.endpoint_ids.contains(&endpoint_id) {
                    continue;
                }
                let delivered = self
                    .deliver(sequence, Arc::new(event), &stop, &hard_stop)
                    .await;
                if delivered.is_err() {
                    tracing::debug!("lane stopped");
                    return;
                }
            }
        }
    }

    /// The tenant's events in log order, from just after the last one the lane finished.
    async fn read_events(&self, subject: &str) -> Result<Ordered, LogUnreadable> {
        let deliver_policy = if self.state.delivered_through > 0 {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.state.delivered_through as u64 + 1,
            }
        } else {
            let start = self.state.endpoint_created_at - CLOCK_SLACK;
            DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp(start.timestamp())
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            }
        };
        let consumer = self
            .lanes
            .log_stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| LogUnreadable(Box::new(error)))?;
        consumer
            .messages()
            .await
            .map_err(|error| LogUnreadable(Box::new(error)))
    }

    /// Makes the delivery at the lane's head until it reaches a final outcome.
    async fn deliver(
        &mut self,
        sequence: i64,
        event: Arc<EventAccepted>,
        stop: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Result<(), LaneLost> {
        let (mut attempt_number, mut due_at) = match self.state.head_sequence {
            Some(head) if head == sequence => (
                self.state.head_attempt_number.unwrap_or(1).max(1) as u32,
                self.state.head_due_at.unwrap_or(event.accepted_at),
            ),
            _ => (1, event.accepted_at),
        };
        loop {
            let wait = (due_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return Err(LaneLost),
                }
            }
            // Never start an attempt that could outlive the lease (renewals failing).
            while self.lanes.lease_left() < self.lanes.request_timeout + RENEW_EVERY {
                tracing::warn!("lane lease not renewed; holding the next attempt");
                pause(stop, RENEW_EVERY).await;
                if stop.is_cancelled() {
                    return Err(LaneLost);
                }
            }
            let job = DeliveryJob {
                event: event.clone(),
                event_sequence: sequence as u64,
                endpoint_id: EndpointId(self.state.endpoint_id),
                attempt_number,
                scheduled_at: due_at,
            };
            let outcome = tokio::select! {
                outcome = self.lanes.runner.run(job, &InLane) => outcome,
                () = hard_stop.cancelled() => return Err(LaneLost),
            };
            match outcome {
                Ok(JobOutcome::Attempted {
                    next_attempt_at: Some(next),
                    ..
                }) => {
                    attempt_number += 1;
                    due_at = next;
                }
                Ok(JobOutcome::Deferred { until, .. }) => due_at = until,
                Ok(JobOutcome::Attempted { .. } | JobOutcome::LeftToLane) => {
                    self.save(sequence, Head::Finished, stop).await?;
                    self.state.delivered_through = sequence;
                    self.state.head_sequence = None;
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, "ordered attempt not recorded; trying again");
                    pause(stop, BACKOFF).await;
                    if stop.is_cancelled() {
                        return Err(LaneLost);
                    }
                    continue;
                }
            }
            let head = Head::Waiting {
                attempt_number,
                due_at,
            };
            self.save(sequence, head, stop).await?;
            self.state.head_sequence = Some(sequence);
            self.state.head_attempt_number = Some(attempt_number as i32);
            self.state.head_due_at = Some(due_at);
        }
    }

    /// Records where the lane stands, retrying while the database is unreachable.
    async fn save(
        &self,
        sequence: i64,
        head: Head,
        stop: &CancellationToken,
    ) -> Result<(), LaneLost> {
        loop {
            match self
                .lanes
                .leases
                .save(self.state.endpoint_id, sequence, &head)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    tracing::warn!("ordered lane taken over by another process; stopping");
                    return Err(LaneLost);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not save the ordered lane's position");
                    pause(stop, BACKOFF).await;
                    if stop.is_cancelled() {
                        return Err(LaneLost);
                    }
                }
            }
        }
    }
}
