//! Deliveries to unordered endpoints: first attempts, retries and replays run side by side,
//! and whatever has to wait (a retry, the event's schedule, a rate limit, an open breaker, a
//! spent retry budget, a busy endpoint) waits in the log, never only in memory: in the retry
//! queue until a time, or, for an endpoint with a queue of its own, in its busy backlog until
//! it has room (`busy_backlogs`).

use crate::attempt::{AttemptError, AttemptRunner, DeliveryJob, JobOutcome, Sequencing};
use crate::busy_backlogs::BacklogsDrained;
use crate::endpoint_concurrency::{Busy, EndpointConcurrency, EndpointSlot};
use crate::retry_queue::RetryScheduler;
use chrono::{DateTime, Utc};
use herald_log::LogError;
use herald_schemas::{DeferralReason, DeliveryDeferred, EndpointId, LogMessage, Namespace};
use std::sync::Arc;

pub struct UnorderedDeliveries {
    runner: Arc<AttemptRunner>,
    retries: RetryScheduler,
    backlogs: BacklogsDrained,
}

impl UnorderedDeliveries {
    pub fn new(
        runner: Arc<AttemptRunner>,
        retries: RetryScheduler,
        backlogs: BacklogsDrained,
    ) -> Self {
        Self {
            runner,
            retries,
            backlogs,
        }
    }

    pub async fn run(&self, job: DeliveryJob) -> Result<JobOutcome, AttemptError> {
        self.runner.run(job, self).await
    }

    /// Runs a delivery taken out of its endpoint's busy backlog: it waits for the endpoint's
    /// slot however long (its drainer took only as many as the endpoint has room for), so it
    /// is never deferred again for being busy.
    pub async fn run_from_backlog(&self, job: DeliveryJob) -> Result<JobOutcome, AttemptError> {
        self.runner.run(job, &FromBacklog(self)).await
    }

    pub fn concurrency(&self) -> &EndpointConcurrency {
        self.runner.endpoint_concurrency()
    }

    pub fn retries(&self) -> &RetryScheduler {
        &self.retries
    }

    pub fn namespace(&self) -> &Namespace {
        self.runner.publisher().namespace()
    }

    pub fn publisher(&self) -> &herald_log::LogPublisher {
        self.runner.publisher()
    }
}

impl Sequencing for UnorderedDeliveries {
    /// First attempts to an ordered endpoint are its lane's. Replays (attempt numbers above
    /// 1) are sent outside its order: they repeat something the lane already finished.
    fn leaves_to_lane(&self, job: &DeliveryJob, endpoint_ordered: bool) -> bool {
        endpoint_ordered && job.attempt_number == 1
    }

    /// Retries are charged to the retry budget; first attempts (also when scheduled or
    /// paced) are not.
    fn charges_retry_budget(&self, job: &DeliveryJob) -> bool {
        job.attempt_number > 1
    }

    /// A delivery does not wait long for a busy endpoint: it holds its log message
    /// unacknowledged meanwhile (see `endpoint_concurrency`).
    async fn endpoint_slot(
        &self,
        concurrency: &EndpointConcurrency,
        endpoint_id: EndpointId,
    ) -> Result<Option<EndpointSlot>, Busy> {
        concurrency.acquire(endpoint_id).await.map(Some)
    }

    /// Into the retry queue. The deferral is also recorded in the log (unless it is the
    /// event's own schedule, which the read model knows), so that the read model knows when
    /// the delivery is due and why it waits.
    ///
    /// A delivery to an endpoint busy with a queue of its own goes to the endpoint's busy
    /// backlog instead, still due when it was (its `until` is only an estimate for the read
    /// model), to be taken out when the endpoint has room.
    async fn defer(
        &self,
        job: &DeliveryJob,
        until: DateTime<Utc>,
        reason: Option<DeferralReason>,
    ) -> Result<(), LogError> {
        let to_backlog = reason == Some(DeferralReason::EndpointBusy)
            && self.concurrency().has_queue_of_its_own(job.endpoint_id);
        let scheduled = async {
            if to_backlog {
                self.retries
                    .append_to_busy_backlog(&job.retry(job.attempt_number, job.scheduled_at))
                    .await?;
                self.backlogs.appended(job.endpoint_id);
                Ok(())
            } else {
                self.retries
                    .schedule(&job.retry(job.attempt_number, until))
                    .await
            }
        };
        let Some(reason) = reason else {
            return scheduled.await;
        };
        let event = &job.event;
        let deferred = LogMessage::DeliveryDeferred(DeliveryDeferred {
            event_id: event.event_id,
            endpoint_id: job.endpoint_id,
            tenant_id: event.tenant_id,
            attempt_number: job.attempt_number,
            deferred_at: Utc::now(),
            until,
            reason,
        });
        let publisher = self.runner.publisher();
        let subject = publisher.namespace().attempt_subject(event.tenant_id);
        let recorded = async {
            publisher
                .publish_grouped(subject, &deferred)
                .await
                .map(|_| ())
        };
        let (scheduled, recorded) = tokio::join!(scheduled, recorded);
        scheduled?;
        recorded
    }

    async fn schedule_retry(
        &self,
        job: &DeliveryJob,
        due_at: DateTime<Utc>,
    ) -> Result<(), LogError> {
        self.retries
            .schedule(&job.retry(job.attempt_number + 1, due_at))
            .await
    }
}

/// A delivery taken out of its endpoint's busy backlog: as an unordered one, except that it
/// waits for the endpoint's slot instead of being deferred again.
struct FromBacklog<'a>(&'a UnorderedDeliveries);

impl Sequencing for FromBacklog<'_> {
    fn leaves_to_lane(&self, job: &DeliveryJob, endpoint_ordered: bool) -> bool {
        self.0.leaves_to_lane(job, endpoint_ordered)
    }

    fn charges_retry_budget(&self, job: &DeliveryJob) -> bool {
        self.0.charges_retry_budget(job)
    }

    async fn endpoint_slot(
        &self,
        concurrency: &EndpointConcurrency,
        endpoint_id: EndpointId,
    ) -> Result<Option<EndpointSlot>, Busy> {
        Ok(concurrency.acquire_queued(endpoint_id).await)
    }

    async fn defer(
        &self,
        job: &DeliveryJob,
        until: DateTime<Utc>,
        reason: Option<DeferralReason>,
    ) -> Result<(), LogError> {
        self.0.defer(job, until, reason).await
    }

    async fn schedule_retry(
        &self,
        job: &DeliveryJob,
        due_at: DateTime<Utc>,
    ) -> Result<(), LogError> {
        self.0.schedule_retry(job, due_at).await
    }
}
