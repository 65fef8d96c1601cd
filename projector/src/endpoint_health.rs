//! The `endpoint_health` read model: how each endpoint's receiver is doing, folded from its
//! attempts and its breaker changes in the log — last success and failure, the streak of
//! successes (or failures) up to the latest attempt, the breaker's state. The view
//! `endpoint_health_view` adds the endpoint's configuration (enabled, disabled reason).
//!
//! Only attempts that made a request count: an attempt that ended unsent (expired, endpoint
//! gone, parked past its deadline) says nothing about the receiver.

use chrono::{DateTime, Utc};
use herald_schemas::{
    AttemptOutcome, AttemptRecorded, EndpointCircuitClosed, EndpointCircuitOpened, ErrorClass,
};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

/// What one batch of the log says about one endpoint, in log order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthChange {
    pub tenant_id: Uuid,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_class: Option<&'static str>,
    /// Successes since the batch's last failure, or in all of the batch if it had none.
    pub successes_since_failure: i32,
    /// Failures since the batch's last success, or in all of the batch if it had none.
    pub failures_since_success: i32,
    pub had_success: bool,
    pub had_failure: bool,
    /// The latest breaker change: `Some(until)` opened, `None` closed.
    pub breaker: Option<Option<DateTime<Utc>>>,
    pub log_sequence: i64,
}

#[derive(Default)]
pub struct HealthChanges {
    by_endpoint: HashMap<Uuid, HealthChange>,
}

/// Whether an attempt with this class made a request to the receiver.
fn made_a_request(class: Option<ErrorClass>) -> bool {
    !matches!(
        class,
        Some(
            ErrorClass::EndpointUnavailable
                | ErrorClass::CircuitOpen
                | ErrorClass::RetryBudget
                | ErrorClass::EndpointBusy
                | ErrorClass::Expired
        )
    )
}

impl HealthChanges {
    fn entry(&mut self, endpoint_id: Uuid, tenant_id: Uuid, sequence: u64) -> &mut HealthChange {
        let change = self.by_endpoint.entry(endpoint_id).or_default();
        change.tenant_id = tenant_id;
        change.log_sequence = change.log_sequence.max(sequence as i64);
        change
    }

    pub fn attempt(&mut self, attempt: &AttemptRecorded, sequence: u64) {
        if !made_a_request(attempt.error_class) {
            return;
        }
        let change = self.entry(
            attempt.endpoint_id.as_uuid(),
            attempt.tenant_id.as_uuid(),
            sequence,
        );
        let at = attempt.finished_at;
        change.last_attempt_at = change.last_attempt_at.max(Some(at));
        if attempt.outcome == AttemptOutcome::Succeeded {
            change.last_success_at = change.last_success_at.max(Some(at));
            change.successes_since_failure += 1;
            change.failures_since_success = 0;
            change.had_success = true;
        } else {
            change.last_failure_class = attempt.error_class.map(|class| class.as_str());
            change.last_failure_at = change.last_failure_at.max(Some(at));
            change.failures_since_success += 1;
            change.successes_since_failure = 0;
            change.had_failure = true;
        }
    }

    pub fn breaker_opened(&mut self, opened: &EndpointCircuitOpened, sequence: u64) {
        let change = self.entry(
            opened.endpoint_id.as_uuid(),
            opened.tenant_id.as_uuid(),
            sequence,
        );
        change.breaker = Some(Some(opened.until));
    }

    pub fn breaker_closed(&mut self, closed: &EndpointCircuitClosed, sequence: u64) {
        let change = self.entry(
            closed.endpoint_id.as_uuid(),
            closed.tenant_id.as_uuid(),
            sequence,
        );
        change.breaker = Some(None);
    }

    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }

    pub fn get(&self, endpoint_id: Uuid) -> Option<&HealthChange> {
        self.by_endpoint.get(&endpoint_id)
    }
}

/// Applies a batch's changes on top of what `endpoint_health` holds, in one statement.
#[tracing::instrument(level = "debug", skip_all, fields(endpoints = changes.by_endpoint.len()))]
pub async fn apply(
    transaction: &mut Transaction<'_, Postgres>,
    changes: HealthChanges,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut rows = HealthRows::default();
    for (endpoint_id, change) in changes.by_endpoint {
        rows.endpoint_id.push(endpoint_id);
        rows.tenant_id.push(change.tenant_id);
        rows.last_attempt_at.push(change.last_attempt_at);
        rows.last_success_at.push(change.last_success_at);
        rows.last_failure_at.push(change.last_failure_at);
        rows.last_failure_class.push(change.last_failure_class);
        rows.successes.push(change.successes_since_failure);
        rows.failures.push(change.failures_since_success);
        rows.had_success.push(change.had_success);
        rows.had_failure.push(change.had_failure);
        rows.breaker_changed.push(change.breaker.is_some());
        rows.breaker_open_until.push(change.breaker.flatten());
        rows.log_sequence.push(change.log_sequence);
    }
    // Endpoints with a row: a streak goes on from the stored one only if the batch did not
    // break it, and the batch's breaker change (if any) is the latest. Endpoints seen for the
    // first time get a row. One statement; the projector is the only writer.
    sqlx::query(&UPSERT)
        .bind(&rows.endpoint_id)
        .bind(&rows.tenant_id)
        .bind(&rows.last_attempt_at)
        .bind(&rows.last_success_at)
        .bind(&rows.last_failure_at)
        .bind(&rows.last_failure_class)
        .bind(&rows.successes)
        .bind(&rows.failures)
        .bind(&rows.had_success)
        .bind(&rows.had_failure)
        .bind(&rows.breaker_changed)
        .bind(&rows.breaker_open_until)
        .bind(&rows.log_sequence)
        .execute(&mut **transaction)
        .await
        .map(|_| ())
}

static UPSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH c AS ({CHANGES}), \
         updated AS ( \
           UPDATE endpoint_health AS h SET \
             last_attempt_at = GREATEST(h.last_attempt_at, c.last_attempt_at), \
             last_success_at = GREATEST(h.last_success_at, c.last_success_at), \
             last_failure_at = GREATEST(h.last_failure_at, c.last_failure_at), \
             last_failure_class = CASE WHEN c.had_failure THEN c.last_failure_class \
               ELSE h.last_failure_class END, \
             success_streak = CASE WHEN c.had_failure THEN c.successes \
               ELSE h.success_streak + c.successes END, \
             failure_streak = CASE WHEN c.had_success THEN c.failures \
               ELSE h.failure_streak + c.failures END, \
             breaker_open = CASE WHEN c.breaker_changed THEN c.breaker_open_until IS NOT NULL \
               ELSE h.breaker_open END, \
             breaker_open_until = CASE WHEN c.breaker_changed THEN c.breaker_open_until \
               ELSE h.breaker_open_until END, \
             log_sequence = GREATEST(h.log_sequence, c.log_sequence) \
           FROM c WHERE h.endpoint_id = c.endpoint_id RETURNING h.endpoint_id) \
         INSERT INTO endpoint_health (endpoint_id, tenant_id, last_attempt_at, last_success_at, \
           last_failure_at, last_failure_class, success_streak, failure_streak, breaker_open, \
           breaker_open_until, log_sequence) \
         SELECT endpoint_id, tenant_id, last_attempt_at, last_success_at, last_failure_at, \
           last_failure_class, successes, failures, \
           breaker_changed AND breaker_open_until IS NOT NULL, breaker_open_until, log_sequence \
         FROM c WHERE endpoint_id NOT IN (SELECT endpoint_id FROM updated)"
    )
});

/// The batch's changes as rows `c`, from the bound arrays.
const CHANGES: &str = "SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], \
    $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int4[], $8::int4[], $9::bool[], \
    $10::bool[], $11::bool[], $12::timestamptz[], $13::int8[]) \
    AS c(endpoint_id, tenant_id, last_attempt_at, last_success_at, last_failure_at, \
      last_failure_class, successes, failures, had_success, had_failure, breaker_changed, \
      breaker_open_until, log_sequence)";

#[derive(Default)]
struct HealthRows {
    endpoint_id: Vec<Uuid>,
    tenant_id: Vec<Uuid>,
    last_attempt_at: Vec<Option<DateTime<Utc>>>,
    last_success_at: Vec<Option<DateTime<Utc>>>,
    last_failure_at: Vec<Option<DateTime<Utc>>>,
    last_failure_class: Vec<Option<&'static str>>,
    successes: Vec<i32>,
    failures: Vec<i32>,
    had_success: Vec<bool>,
    had_failure: Vec<bool>,
    breaker_changed: Vec<bool>,
    breaker_open_until: Vec<Option<DateTime<Utc>>>,
    log_sequence: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::{AttemptId, EndpointId, EventId, TenantId};

    fn attempt(
        endpoint: Uuid,
        outcome: AttemptOutcome,
        class: Option<ErrorClass>,
        second: i64,
    ) -> AttemptRecorded {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000 + second, 0).expect("time");
        AttemptRecorded {
            attempt_id: AttemptId::generate(),
            event_id: EventId(Uuid::now_v7()),
            endpoint_id: EndpointId(endpoint),
            tenant_id: TenantId(Uuid::nil()),
            trace_id: String::new(),
            event_type: "t".into(),
            attempt_number: 1,
            event_accepted_at: at,
            scheduled_at: at,
            started_at: at,
            finished_at: at,
            http_status: None,
            error_class: class,
            error_message: None,
            latency_ms: 1,
            response_body_hash: None,
            outcome,
            next_attempt_at: None,
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    #[test]
    fn streaks_count_from_the_latest_change_of_result_in_log_order() {
        let endpoint = Uuid::now_v7();
        let mut changes = HealthChanges::default();
        let failed = Some(ErrorClass::Http5xx);
        changes.attempt(&attempt(endpoint, AttemptOutcome::Succeeded, None, 1), 1);
        changes.attempt(
            &attempt(endpoint, AttemptOutcome::RetryScheduled, failed, 2),
            2,
        );
        changes.attempt(&attempt(endpoint, AttemptOutcome::Succeeded, None, 3), 3);
        changes.attempt(&attempt(endpoint, AttemptOutcome::Succeeded, None, 4), 4);
        let change = changes.get(endpoint).expect("endpoint seen");
        assert_eq!(change.successes_since_failure, 2);
        assert_eq!(change.failures_since_success, 0);
        assert!(change.had_success && change.had_failure);
        assert_eq!(change.last_failure_class, Some("http_5xx"));
        assert_eq!(change.log_sequence, 4);
        assert!(change.last_success_at > change.last_failure_at);
    }

    #[test]
    fn an_attempt_that_sent_nothing_says_nothing_about_the_receiver() {
        let endpoint = Uuid::now_v7();
        let mut changes = HealthChanges::default();
        for class in [
            ErrorClass::Expired,
            ErrorClass::CircuitOpen,
            ErrorClass::EndpointUnavailable,
        ] {
            let unsent = attempt(endpoint, AttemptOutcome::DeadLettered, Some(class), 1);
            changes.attempt(&unsent, 1);
        }
        assert!(changes.is_empty());
        let timed_out = attempt(
            endpoint,
            AttemptOutcome::Failed,
            Some(ErrorClass::Timeout),
            2,
        );
        changes.attempt(&timed_out, 2);
        assert_eq!(
            changes
                .get(endpoint)
                .map(|change| change.failures_since_success),
            Some(1)
        );
    }
}
