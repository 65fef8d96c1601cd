//! One attempt of one delivery: look up the endpoint, send, decide what happens next, and
//! record it in the log (plus the retry, when one is scheduled). The source message is only
//! acknowledged by the caller after this returns `Ok`, i.e. once the record is durable.

use crate::circuit_breaker::{Admission, Transition};
use crate::endpoint_breakers::EndpointBreakers;
use crate::endpoint_concurrency::{Busy, EndpointConcurrency};
use crate::endpoint_registry::{EndpointRegistry, RegistryError};
use crate::http_sender::{HttpSender, SendReport, Webhook};
use crate::rate_limit::KeyedBuckets;
use crate::retry_budget::RetryBudget;
use crate::retry_policy::{AttemptResult, Decision, RetryPolicy};
use crate::retry_queue::RetryScheduler;
use chrono::{DateTime, Utc};
use herald_log::outbox::Outbox;
use herald_log::{LogError, LogPublisher};
use herald_schemas::{
    AttemptId, AttemptOutcome, AttemptRecorded, DeferralReason, DeliveryDeferred,
    EndpointCircuitClosed, EndpointCircuitOpened, EndpointId, ErrorClass, EventAccepted,
    LogMessage, RateLimit, RetryDue,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// A delivery whose next attempt is due now.
pub struct DeliveryJob {
    pub event: Arc<EventAccepted>,
    pub event_sequence: u64,
    pub endpoint_id: EndpointId,
    pub attempt_number: u32,
    pub scheduled_at: DateTime<Utc>,
    /// Run by an ordered endpoint's lane: waits and retries are handed back to the lane
    /// rather than put in the retry queue, so that nothing overtakes this delivery.
    pub in_lane: bool,
}

impl DeliveryJob {
    /// This delivery, due again at `due_at` as attempt `attempt_number`.
    pub fn retry(&self, attempt_number: u32, due_at: DateTime<Utc>) -> RetryDue {
        RetryDue {
            event_id: self.event.event_id,
            endpoint_id: self.endpoint_id,
            tenant_id: self.event.tenant_id,
            event_sequence: self.event_sequence,
            attempt_number,
            due_at,
        }
    }

    /// Retries are charged to the retry budget; first attempts (also when scheduled or paced)
    /// and ordered lanes, which hold one delivery per endpoint at most, are not.
    fn charged_to_retry_budget(&self) -> bool {
        self.attempt_number > 1 && !self.in_lane
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("could not change endpoint configuration: {0}")]
    Database(#[from] sqlx::Error),
}

/// Longest a delivery waits in memory for its endpoint's rate limit.
const MAX_PACING_WAIT: Duration = Duration::from_secs(1);

/// A scheduled delivery this close to its time is attempted rather than queued again.
const SCHEDULE_SLACK_MS: i64 = 50;

/// What became of a delivery job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Attempted {
        outcome: AttemptOutcome,
        next_attempt_at: Option<DateTime<Utc>>,
    },
    /// Not attempted yet: due again at `until` with the same attempt number (scheduled,
    /// rate limited, circuit breaker open, over the retry budget). Outside a lane the retry
    /// queue already holds it.
    Deferred { until: DateTime<Utc> },
    /// The endpoint is ordered: its lane makes this delivery.
    LeftToLane,
}

pub struct AttemptRunner {
    pub sender: HttpSender,
    pub endpoints: EndpointRegistry,
    pub publisher: LogPublisher,
    pub outbox: Outbox,
    pub retries: RetryScheduler,
    pub policy: RetryPolicy,
    pub in_flight: Semaphore,
    /// Retries may hold only part of `in_flight`, so first attempts always find room.
    pub retry_in_flight: Semaphore,
    pub retry_budget: RetryBudget,
    pub per_endpoint: EndpointConcurrency,
    pub breakers: EndpointBreakers,
    pub rate_limits: KeyedBuckets<EndpointId>,
}

impl AttemptRunner {
    pub async fn run(&self, job: DeliveryJob) -> Result<JobOutcome, AttemptError> {
        let span = tracing::info_span!(
            "attempt",
            trace_id = %job.event.trace_id,
            tenant_id = %job.event.tenant_id,
            event_id = %job.event.event_id,
            endpoint_id = %job.endpoint_id,
            attempt_number = job.attempt_number,
        );
        self.run_inner(job).instrument(span).await
    }

    async fn run_inner(&self, job: DeliveryJob) -> Result<JobOutcome, AttemptError> {
        let endpoint = self.endpoints.get(job.endpoint_id).await?;
        // Replays (attempt numbers above 1) of an ordered endpoint's deliveries are sent
        // outside its order: they repeat something the lane already finished.
        if !job.in_lane && job.attempt_number == 1 && endpoint.as_ref().is_some_and(|t| t.ordered) {
            return Ok(JobOutcome::LeftToLane);
        }
        let policy = match endpoint.as_ref().and_then(|target| target.retry_policy) {
            Some(own) => Cow::Owned(self.policy.with_override(&own)),
            None => Cow::Borrowed(&self.policy),
        };
        let now = Utc::now();
        if let Some(expires_at) = job.event.expires_at.filter(|expires_at| now >= *expires_at) {
            return self.expire(&job, expires_at).await;
        }
        if let Some(after) = job.event.deliver_after {
            if after - now > chrono::Duration::milliseconds(SCHEDULE_SLACK_MS) {
                return self.defer(&job, after, None).await;
            }
        }
        let report = match endpoint.as_deref() {
            Some(target) if target.enabled => {
                if let Some(until) = self.breakers.parked_until(job.endpoint_id, Utc::now()) {
                    return self
                        .park(&job, &policy, until, DeferralReason::CircuitOpen)
                        .await;
                }
                if job.charged_to_retry_budget() {
                    if let Err(wait) = self.retry_budget.take() {
                        let until =
                            Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                        return self
                            .park(&job, &policy, until, DeferralReason::RetryBudget)
                            .await;
                    }
                }
                // A lane holds one delivery at most and must not be overtaken: it waits.
                let _endpoint_slot = match job.in_lane {
                    true => self.per_endpoint.acquire_waiting(job.endpoint_id).await,
                    false => match self.per_endpoint.acquire(job.endpoint_id).await {
                        Ok(slot) => Some(slot),
                        Err(Busy { retry_in }) => {
                            let until = Utc::now()
                                + chrono::Duration::from_std(retry_in).unwrap_or_default();
                            return self
                                .park(&job, &policy, until, DeferralReason::EndpointBusy)
                                .await;
                        }
                    },
                };
                // Pacing comes before the breaker: a probe, once admitted, must be sent.
                if let Some(limit) = target.rate_limit {
                    if let Some(due_at) = self.pace(job.endpoint_id, limit).await {
                        return self
                            .defer(&job, due_at, Some(DeferralReason::RateLimited))
                            .await;
                    }
                }
                if let Admission::Park { until } = self.breakers.admit(job.endpoint_id, Utc::now())
                {
                    return self
                        .park(&job, &policy, until, DeferralReason::CircuitOpen)
                        .await;
                }
                let _retry_permit = match job.attempt_number > 1 {
                    true => Some(self.retry_in_flight.acquire().await),
                    false => None,
                };
                let _permit = self.in_flight.acquire().await;
                let report = self
                    .sender
                    .send(&Webhook {
                        url: &target.url,
                        event_id: job.event.event_id,
                        event_type: &job.event.event_type,
                        payload: &job.event.payload,
                        trace_id: &job.event.trace_id,
                        secrets: &target.secrets,
                    })
                    .await;
                let transition =
                    self.breakers
                        .record(job.endpoint_id, &report.result, report.finished_at);
                if let Some(transition) = transition {
                    self.announce(&job, transition, report.finished_at).await;
                }
                report
            }
            _ => SendReport::not_sent(
                ErrorClass::EndpointUnavailable,
                "the endpoint was deleted or disabled",
            ),
        };
        let decision = policy
            .decide(
                job.attempt_number,
                job.event.due_since(),
                report.finished_at,
                report.result,
                rand::random(),
            )
            .within_expiry(job.event.expires_at);
        self.conclude(&job, report, decision).await
    }

    /// Records an attempt (and schedules its retry) in the log.
    async fn conclude(
        &self,
        job: &DeliveryJob,
        report: SendReport,
        decision: Decision,
    ) -> Result<JobOutcome, AttemptError> {
        let error_class = match report.result {
            AttemptResult::Succeeded => None,
            AttemptResult::Retryable { class, .. } | AttemptResult::Final { class } => Some(class),
        };
        let event = &job.event;
        if report.http_status == Some(410) {
            self.disable_gone_endpoint(event.tenant_id, job.endpoint_id)
                .await?;
        }
        let record = AttemptRecorded {
            attempt_id: AttemptId::generate(),
            event_id: event.event_id,
            endpoint_id: job.endpoint_id,
            tenant_id: event.tenant_id,
            trace_id: event.trace_id.clone(),
            event_type: event.event_type.clone(),
            attempt_number: job.attempt_number,
            event_accepted_at: event.accepted_at,
            scheduled_at: job.scheduled_at,
            started_at: report.started_at,
            finished_at: report.finished_at,
            http_status: report.http_status,
            error_class,
            error_message: report.error_message,
            latency_ms: u32::try_from(report.latency.as_millis()).unwrap_or(u32::MAX),
            response_body_hash: report.response_body_hash,
            outcome: decision.outcome,
            next_attempt_at: decision.next_attempt_at,
        };
        tracing::debug!(outcome = decision.outcome.as_str(), http_status = ?record.http_status, "attempt finished");
        let subject = self.publisher.namespace().attempt_subject(event.tenant_id);
        let message = LogMessage::AttemptRecorded(record);
        let recorded = self.publisher.publish(subject, &message);
        match decision.next_attempt_at {
            Some(due_at) if !job.in_lane => {
                let retry = job.retry(job.attempt_number + 1, due_at);
                let (recorded, scheduled) = tokio::join!(recorded, self.retries.schedule(&retry));
                recorded?;
                scheduled?;
            }
            _ => {
                recorded.await?;
            }
        }
        Ok(JobOutcome::Attempted {
            outcome: decision.outcome,
            next_attempt_at: decision.next_attempt_at,
        })
    }
}

impl AttemptRunner {
    /// The event expired before this delivery could be made: record that, send nothing.
    async fn expire(
        &self,
        job: &DeliveryJob,
        expires_at: DateTime<Utc>,
    ) -> Result<JobOutcome, AttemptError> {
        let message = format!(
            "the event expired at {} before it could be delivered",
            expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        self.end_unsent(job, ErrorClass::Expired, message, AttemptOutcome::Expired)
            .await
    }

    /// Records that the delivery ended without a request being made.
    async fn end_unsent(
        &self,
        job: &DeliveryJob,
        class: ErrorClass,
        message: String,
        outcome: AttemptOutcome,
    ) -> Result<JobOutcome, AttemptError> {
        let decision = Decision {
            outcome,
            next_attempt_at: None,
        };
        self.conclude(job, SendReport::not_sent(class, message), decision)
            .await
    }

    /// Waits for the endpoint's rate limit to allow one more delivery; a wait longer than a
    /// second is not spent holding the delivery here: the delivery is re-queued for then
    /// (returned) instead.
    async fn pace(&self, endpoint_id: EndpointId, limit: RateLimit) -> Option<DateTime<Utc>> {
        loop {
            match self
                .rate_limits
                .take(&endpoint_id, f64::from(limit.per_second), limit.burst)
            {
                Ok(()) => return None,
                Err(wait) if wait <= MAX_PACING_WAIT => tokio::time::sleep(wait).await,
                Err(wait) => {
                    return Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
                }
            }
        }
    }

    /// The delivery is not attempted now but at `until`, with the same attempt number: in the
    /// retry queue, or in its lane. Outside a lane the deferral is also recorded in the log
    /// (unless it is the event's own schedule, which the read model knows), so that the read
    /// model knows when the delivery is due and why it waits.
    async fn defer(
        &self,
        job: &DeliveryJob,
        until: DateTime<Utc>,
        reason: Option<DeferralReason>,
    ) -> Result<JobOutcome, AttemptError> {
        if job.in_lane {
            return Ok(JobOutcome::Deferred { until });
        }
        let retry = job.retry(job.attempt_number, until);
        let scheduled = self.retries.schedule(&retry);
        match reason {
            Some(reason) => {
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
                let subject = self.publisher.namespace().attempt_subject(event.tenant_id);
                let recorded = self.publisher.publish(subject, &deferred);
                let (scheduled, recorded) = tokio::join!(scheduled, recorded);
                scheduled?;
                recorded?;
            }
            None => scheduled.await?,
        }
        Ok(JobOutcome::Deferred { until })
    }

    /// The delivery must wait until `until` without being attempted (circuit breaker open,
    /// retry budget spent, endpoint busy); its deadline still runs, and a wait past it
    /// dead-letters it.
    async fn park(
        &self,
        job: &DeliveryJob,
        policy: &RetryPolicy,
        until: DateTime<Utc>,
        reason: DeferralReason,
    ) -> Result<JobOutcome, AttemptError> {
        let due_at = match reason {
            // Spread the endpoint's parked deliveries over half a second after it reopens.
            DeferralReason::CircuitOpen => {
                until + chrono::Duration::milliseconds(rand::random::<u16>() as i64 % 500)
            }
            _ => until,
        };
        let deadline =
            job.event.due_since() + chrono::Duration::from_std(policy.deadline).unwrap_or_default();
        if due_at > deadline {
            let (class, message) = match reason {
                DeferralReason::CircuitOpen => (
                    ErrorClass::CircuitOpen,
                    "the deadline passed while the endpoint's circuit breaker was open",
                ),
                DeferralReason::EndpointBusy => (
                    ErrorClass::EndpointBusy,
                    "the deadline passed while the endpoint had as many requests in flight as it may have",
                ),
                DeferralReason::RetryBudget | DeferralReason::RateLimited => (
                    ErrorClass::RetryBudget,
                    "the deadline passed while the retry budget was spent",
                ),
            };
            return self
                .end_unsent(job, class, message.to_owned(), AttemptOutcome::DeadLettered)
                .await;
        }
        tracing::debug!(%due_at, reason = reason.as_str(), "parked");
        self.defer(job, due_at, Some(reason)).await
    }

    /// Tells every worker (and subscribers) that this endpoint's breaker changed.
    async fn announce(&self, job: &DeliveryJob, transition: Transition, at: DateTime<Utc>) {
        let tenant_id = job.event.tenant_id;
        let endpoint_id = job.endpoint_id;
        let message = match transition {
            Transition::Opened {
                until,
                consecutive_failures,
            } => {
                tracing::warn!(%endpoint_id, %until, consecutive_failures, "circuit breaker opened");
                LogMessage::EndpointCircuitOpened(EndpointCircuitOpened {
                    endpoint_id,
                    tenant_id,
                    opened_at: at,
                    until,
                    consecutive_failures,
                })
            }
            Transition::Closed => {
                tracing::info!(%endpoint_id, "circuit breaker closed");
                LogMessage::EndpointCircuitClosed(EndpointCircuitClosed {
                    endpoint_id,
                    tenant_id,
                    closed_at: at,
                })
            }
        };
        let subject = self.publisher.namespace().config_subject(tenant_id);
        if let Err(error) = self.publisher.publish(subject, &message).await {
            tracing::warn!(%error, "circuit breaker change not appended to the log");
        }
    }

    /// 410 Gone means the receiver will never want deliveries again: stop sending any.
    async fn disable_gone_endpoint(
        &self,
        tenant_id: herald_schemas::TenantId,
        endpoint_id: EndpointId,
    ) -> Result<(), AttemptError> {
        let disabled_at = Utc::now();
        let reason = format!(
            "the receiver answered 410 Gone at {}",
            disabled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let message = LogMessage::EndpointDisabled(herald_schemas::EndpointDisabled {
            endpoint_id,
            tenant_id,
            reason: reason.clone(),
            disabled_at,
        });
        let mut transaction = self.endpoints.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = now() \
             WHERE endpoint_id = $1 AND enabled",
        )
        .bind(endpoint_id.as_uuid())
        .bind(&reason)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        // Only the attempt that disabled it announces it (others find it already disabled).
        let staged = if updated == 1 {
            let subject = self.publisher.namespace().config_subject(tenant_id);
            Some(Outbox::stage(&mut transaction, subject, &message).await?)
        } else {
            None
        };
        transaction.commit().await?;
        self.endpoints.invalidate(endpoint_id);
        if let Some(staged) = staged {
            tracing::warn!(%endpoint_id, "endpoint disabled: receiver answered 410 Gone");
            self.outbox.send(staged).await;
        }
        Ok(())
    }
}
