//! One attempt of one delivery: look up the endpoint, make the checks before an attempt
//! (`pre_attempt`), send, decide what happens next (`retry_policy`), and record it in the log.
//! The source message is only acknowledged by the caller after this returns `Ok`, i.e. once
//! the record is durable.
//!
//! Unordered deliveries and ordered endpoints' lanes differ in where a delivery waits and
//! what it is charged; each says so through its own [`Sequencing`].

use crate::attempt_record;
use crate::circuit_breaker::{Admission, Transition};
use crate::config::DeliveryConfig;
use crate::endpoint_breakers::EndpointBreakers;
use crate::endpoint_concurrency::{Busy, EndpointConcurrency, EndpointSlot};
use crate::endpoint_registry::{EndpointRegistry, EndpointTarget, RegistryError};
use crate::http_sender::{HttpSender, SendReport, Webhook};
use crate::pre_attempt::{self, Answer, Checks, EndpointState, Gate, Parked, Verdict};
use crate::rate_limit::KeyedBuckets;
use crate::retry_budget::RetryBudget;
use crate::retry_policy::{AttemptResult, Decision, RetryPolicy};
use chrono::{DateTime, Utc};
use herald_http::trace_context;
use herald_log::outbox::Outbox;
use herald_log::{LogError, LogPublisher};
use herald_schemas::operational::is_operational;
use herald_schemas::{
    AttemptId, AttemptOutcome, AttemptRecorded, DeferralReason, EndpointCircuitClosed,
    EndpointCircuitOpened, EndpointId, ErrorClass, EventAccepted, LogMessage, RateLimit, RetryDue,
};
use std::borrow::Cow;
use std::future::Future;
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
}

/// What differs between a delivery made by the unordered workers (waits and retries go
/// through the retry queue) and one made by an ordered endpoint's lane (which holds its
/// delivery until it is finished, so that nothing overtakes it).
pub trait Sequencing: Sync {
    /// Whether this delivery is made by its ordered endpoint's lane instead.
    fn leaves_to_lane(&self, job: &DeliveryJob, endpoint_ordered: bool) -> bool;

    /// Whether the attempt is charged to the process's retry budget.
    fn charges_retry_budget(&self, job: &DeliveryJob) -> bool;

    /// One of the endpoint's in-flight slots (`None` if the endpoint's slots are gone), or
    /// how long until one should be free.
    fn endpoint_slot(
        &self,
        concurrency: &EndpointConcurrency,
        endpoint_id: EndpointId,
    ) -> impl Future<Output = Result<Option<EndpointSlot>, Busy>> + Send;

    /// Puts the delivery aside until `until`, with the same attempt number; `reason` is
    /// `None` for the event's own schedule.
    fn defer(
        &self,
        job: &DeliveryJob,
        until: DateTime<Utc>,
        reason: Option<DeferralReason>,
    ) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Whether the attempt's record may wait a moment to be appended with others
    /// (`herald_log::grouped_writes`): not where the next delivery waits for it.
    fn record_may_wait(&self) -> bool {
        true
    }

    /// Schedules the next attempt the retry policy decided on; runs while the attempt's
    /// record is appended.
    fn schedule_retry(
        &self,
        job: &DeliveryJob,
        due_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Longest a delivery waits in memory for its endpoint's rate limit.
const MAX_PACING_WAIT: Duration = Duration::from_secs(1);

/// What became of a delivery job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Attempted {
        outcome: AttemptOutcome,
        next_attempt_at: Option<DateTime<Utc>>,
    },
    /// Not attempted yet: due again at `until` with the same attempt number (scheduled,
    /// rate limited, circuit breaker open, over the retry budget); the job's `Sequencing`
    /// holds it.
    Deferred { until: DateTime<Utc> },
    /// The endpoint is ordered: its lane makes this delivery.
    LeftToLane,
}

pub struct AttemptRunner {
    sender: HttpSender,
    endpoints: EndpointRegistry,
    publisher: LogPublisher,
    outbox: Outbox,
    policy: RetryPolicy,
    in_flight: Semaphore,
    /// Retries may hold only part of `in_flight`, so first attempts always find room.
    retry_in_flight: Semaphore,
    retry_budget: RetryBudget,
    per_endpoint: EndpointConcurrency,
    breakers: EndpointBreakers,
    rate_limits: KeyedBuckets<EndpointId>,
    /// How long an attempt's record is appended again while the log cannot take it.
    record_persistence: Duration,
}

impl AttemptRunner {
    pub fn new(
        config: &DeliveryConfig,
        sender: HttpSender,
        endpoints: EndpointRegistry,
        publisher: LogPublisher,
        outbox: Outbox,
    ) -> Self {
        Self {
            sender,
            endpoints,
            publisher,
            outbox,
            policy: config.retry_policy(),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            retry_in_flight: Semaphore::new((config.max_in_flight / 2).max(1)),
            retry_budget: RetryBudget::new(config.retry_budget_per_minute),
            // Half the first-attempt consumer's pending limit, so that deliveries queued for
            // endpoints that do not answer leave the other half of the log's window to
            // everyone else (those queued for endpoints that answer wait a second at most).
            per_endpoint: EndpointConcurrency::new(
                config.max_in_flight_per_endpoint,
                config.max_in_flight * 2,
            ),
            breakers: EndpointBreakers::new(config.breaker_policy()),
            rate_limits: Default::default(),
            record_persistence: attempt_record::persistence(
                Duration::from_millis(config.ack_wait_ms),
                Duration::from_millis(config.request_timeout_ms),
            ),
        }
    }

    pub fn publisher(&self) -> &LogPublisher {
        &self.publisher
    }

    pub fn endpoint_concurrency(&self) -> &EndpointConcurrency {
        &self.per_endpoint
    }

    /// Takes in a configuration change read from the log: breaker changes other processes
    /// made, and endpoints whose cached configuration is stale.
    pub fn follow(&self, message: &LogMessage) {
        match message {
            LogMessage::EndpointCircuitOpened(opened) => self
                .breakers
                .opened_elsewhere(opened.endpoint_id, opened.until),
            LogMessage::EndpointCircuitClosed(closed) => {
                self.breakers.closed_elsewhere(closed.endpoint_id)
            }
            _ => {
                if let Some((_, endpoint_id)) = message.changed_endpoint() {
                    self.endpoints.invalidate(endpoint_id);
                }
            }
        }
    }

    pub async fn run<S: Sequencing>(
        &self,
        job: DeliveryJob,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let span = tracing::info_span!(
            "attempt",
            trace_id = %job.event.trace_id,
            tenant_id = %job.event.tenant_id,
            event_id = %job.event.event_id,
            endpoint_id = %job.endpoint_id,
            attempt_number = job.attempt_number,
            attempt_id = tracing::field::Empty,
        );
        trace_context::join_event_trace(&span, &job.event.trace_id, job.event.event_id);
        let finished = self
            .run_inner(job, sequencing)
            .instrument(span.clone())
            .await;
        let (outcome, failed) = match &finished {
            Ok(JobOutcome::Attempted { outcome, .. }) => {
                (outcome.as_str(), *outcome != AttemptOutcome::Succeeded)
            }
            Ok(JobOutcome::Deferred { .. }) => ("deferred", false),
            Ok(JobOutcome::LeftToLane) => ("left_to_lane", false),
            Err(_) => ("not_recorded", true),
        };
        trace_context::record_outcome(&span, outcome, failed);
        finished
    }

    async fn run_inner<S: Sequencing>(
        &self,
        job: DeliveryJob,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let endpoint = self.endpoints.get(job.endpoint_id).await?;
        if sequencing.leaves_to_lane(&job, endpoint.as_ref().is_some_and(|t| t.ordered)) {
            return Ok(JobOutcome::LeftToLane);
        }
        let policy = match endpoint.as_ref().and_then(|target| target.retry_policy) {
            Some(own) => Cow::Owned(self.policy.with_override(&own)),
            None => Cow::Borrowed(&self.policy),
        };
        let target = endpoint.as_deref().filter(|target| target.enabled);
        let mut checks = Checks::new(
            Utc::now(),
            job.event.expires_at,
            job.event.deliver_after,
            match target {
                Some(target) => EndpointState::Available {
                    rate_limited: target.rate_limit.is_some(),
                },
                None => EndpointState::Unavailable,
            },
            sequencing.charges_retry_budget(&job),
        );
        // Held until the request is over.
        let mut slot = None;
        let verdict = loop {
            let gate = match checks.next() {
                Verdict::Ask(gate) => gate,
                verdict => break verdict,
            };
            let answer = match gate {
                Gate::CircuitOpen => self
                    .breakers
                    .parked_until(job.endpoint_id, Utc::now())
                    .map_or(Answer::Pass, Answer::WaitUntil),
                Gate::RetryBudget => match self.retry_budget.take() {
                    Ok(()) => Answer::Pass,
                    Err(wait) => Answer::WaitUntil(after(wait)),
                },
                Gate::EndpointSlot => {
                    match sequencing
                        .endpoint_slot(&self.per_endpoint, job.endpoint_id)
                        .await
                    {
                        Ok(taken) => {
                            slot = taken;
                            Answer::Pass
                        }
                        Err(Busy { retry_in }) => Answer::WaitUntil(after(retry_in)),
                    }
                }
                Gate::RateLimit => match target.and_then(|target| target.rate_limit) {
                    Some(limit) => self
                        .pace(job.endpoint_id, limit)
                        .await
                        .map_or(Answer::Pass, Answer::WaitUntil),
                    None => Answer::Pass,
                },
                Gate::BreakerAdmission => match self.breakers.admit(job.endpoint_id, Utc::now()) {
                    Admission::Park { until } => Answer::WaitUntil(until),
                    Admission::Send | Admission::Probe => Answer::Pass,
                },
            };
            checks.answer(gate, answer);
        };
        let report = match (verdict, target) {
            (Verdict::Expire { expired_at }, _) => {
                return self.expire(&job, expired_at, sequencing).await
            }
            (Verdict::Defer { until, reason }, _) => {
                sequencing.defer(&job, until, reason).await?;
                return Ok(JobOutcome::Deferred { until });
            }
            (Verdict::Park { until, reason }, _) => {
                return self.park(&job, &policy, until, reason, sequencing).await
            }
            (Verdict::Send, Some(target)) => {
                let report = self.send(&job, target).await;
                drop(slot);
                report
            }
            (Verdict::EndpointUnavailable | Verdict::Send | Verdict::Ask(_), target) => {
                SendReport::not_sent(
                    ErrorClass::EndpointUnavailable,
                    match target {
                        None => "the endpoint was deleted",
                        Some(_) => "the endpoint is disabled",
                    },
                )
            }
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
        self.conclude(&job, report, decision, sequencing).await
    }

    /// Makes the request, within the process's in-flight limits, and tells the endpoint's
    /// breaker how it went.
    async fn send(&self, job: &DeliveryJob, target: &EndpointTarget) -> SendReport {
        let _retry_permit = match job.attempt_number > 1 {
            true => Some(self.retry_in_flight.acquire().await),
            false => None,
        };
        let _permit = self.in_flight.acquire().await;
        let _counted = herald_metrics::metrics().attempt_in_flight();
        // The receiver's spans hang under this attempt's span when it is exported.
        let parent_span_id = trace_context::exported_span_id(&tracing::Span::current())
            .unwrap_or_else(|| rand::random::<u64>() | 1);
        let report = self
            .sender
            .send(&Webhook {
                url: &target.url,
                event_id: job.event.event_id,
                event_type: &job.event.event_type,
                payload: &job.event.payload,
                trace_id: &job.event.trace_id,
                parent_span_id,
                signers: &target.signers,
                headers: &target.headers,
            })
            .await;
        // A failing operational delivery must not open a breaker: that would be announced,
        // and one of Herald's own events would lead to another.
        let operational = is_operational(&job.event.event_type);
        let transition = self.breakers.record(
            job.endpoint_id,
            &report.result,
            !operational,
            report.finished_at,
        );
        if let Some(transition) = transition {
            self.announce(job, transition, report.finished_at).await;
        }
        report
    }

    /// Records an attempt (and schedules its retry) in the log.
    async fn conclude<S: Sequencing>(
        &self,
        job: &DeliveryJob,
        report: SendReport,
        decision: Decision,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let error_class = match report.result {
            AttemptResult::Succeeded => None,
            AttemptResult::Retryable { class, .. } | AttemptResult::Final { class } => Some(class),
        };
        let event = &job.event;
        // Only a producer's event disables an endpoint that answers 410: the disabling is
        // announced, and an operational event must not lead to another.
        if report.http_status == Some(410) && !is_operational(&event.event_type) {
            let subject = self.publisher.namespace().config_subject(event.tenant_id);
            self.endpoints
                .disable_gone(event.tenant_id, job.endpoint_id, &self.outbox, subject)
                .await?;
        }
        let attempt_id = AttemptId::generate();
        tracing::Span::current().record("attempt_id", tracing::field::display(attempt_id));
        let record = AttemptRecorded {
            attempt_id,
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
            request_bytes: report.request_bytes,
            response_bytes: report.response_bytes,
        };
        tracing::debug!(outcome = decision.outcome.as_str(), http_status = ?record.http_status, "attempt finished");
        if let Some(status) = record.http_status {
            trace_context::record_http_status(&tracing::Span::current(), status);
        }
        let made_request = record.http_status.is_some() || !report.latency.is_zero();
        let since_accepted = (decision.outcome == AttemptOutcome::Succeeded)
            .then(|| (record.finished_at - event.accepted_at).to_std().ok())
            .flatten();
        herald_metrics::metrics().attempt_recorded(
            decision.outcome.as_str(),
            error_class.map(ErrorClass::as_str),
            made_request.then_some(report.latency),
            since_accepted,
        );
        let message = LogMessage::AttemptRecorded(record);
        let recorded = attempt_record::append(
            &self.publisher,
            || self.publisher.namespace().attempt_subject(event.tenant_id),
            &message,
            sequencing.record_may_wait(),
            self.record_persistence,
        );
        match decision.next_attempt_at {
            Some(due_at) => {
                let scheduled = sequencing.schedule_retry(job, due_at);
                let (recorded, scheduled) = tokio::join!(recorded, scheduled);
                recorded?;
                scheduled?;
            }
            None => {
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
    async fn expire<S: Sequencing>(
        &self,
        job: &DeliveryJob,
        expires_at: DateTime<Utc>,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let message = format!(
            "the event expired at {} before it could be delivered",
            expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        self.end_unsent(
            job,
            ErrorClass::Expired,
            message,
            AttemptOutcome::Expired,
            sequencing,
        )
        .await
    }

    /// Records that the delivery ended without a request being made.
    async fn end_unsent<S: Sequencing>(
        &self,
        job: &DeliveryJob,
        class: ErrorClass,
        message: String,
        outcome: AttemptOutcome,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let decision = Decision {
            outcome,
            next_attempt_at: None,
        };
        let report = SendReport::not_sent(class, message);
        self.conclude(job, report, decision, sequencing).await
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
                Err(wait) => return Some(after(wait)),
            }
        }
    }

    /// The delivery must wait until `until` without being attempted (circuit breaker open,
    /// retry budget spent, endpoint busy); its deadline still runs, and a wait past it
    /// dead-letters it.
    async fn park<S: Sequencing>(
        &self,
        job: &DeliveryJob,
        policy: &RetryPolicy,
        until: DateTime<Utc>,
        reason: DeferralReason,
        sequencing: &S,
    ) -> Result<JobOutcome, AttemptError> {
        let deadline =
            job.event.due_since() + chrono::Duration::from_std(policy.deadline).unwrap_or_default();
        let parked_for = (until - Utc::now()).to_std().unwrap_or_default();
        let spread = pre_attempt::breaker_spread(parked_for).as_millis() as u32;
        let spread_ms = rand::random::<u32>() % spread;
        match pre_attempt::parked(reason, until, deadline, spread_ms) {
            Parked::Until(due_at) => {
                tracing::debug!(%due_at, reason = reason.as_str(), "parked");
                sequencing.defer(job, due_at, Some(reason)).await?;
                Ok(JobOutcome::Deferred { until: due_at })
            }
            Parked::DeadLettered { class, message } => {
                let outcome = AttemptOutcome::DeadLettered;
                self.end_unsent(job, class, message.to_owned(), outcome, sequencing)
                    .await
            }
        }
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
}

/// `wait` from now.
fn after(wait: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
}
