//! Turns a batch of log messages into column arrays for set-based SQL: one statement per
//! table per batch instead of one per message.

use chrono::{DateTime, Utc};
use herald_schemas::{
    AttemptRecorded, DeferralReason, DeliveryDeferred, DeliveryStatus, EventAccepted, EventStatus,
};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Default)]
pub struct EventRows {
    pub event_id: Vec<Uuid>,
    pub tenant_id: Vec<Uuid>,
    pub event_type: Vec<String>,
    pub payload: Vec<String>,
    pub idempotency_key: Vec<Option<String>>,
    pub trace_id: Vec<String>,
    pub accepted_at: Vec<DateTime<Utc>>,
    pub status: Vec<EventStatus>,
    pub log_sequence: Vec<i64>,
    /// Comma-separated endpoint ids (a ragged `uuid[][]` cannot be bound), or None.
    pub target_endpoints: Vec<Option<String>>,
    pub deliver_after: Vec<Option<DateTime<Utc>>>,
    pub expires_at: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
pub struct NewDeliveryRows {
    pub event_id: Vec<Uuid>,
    pub endpoint_id: Vec<Uuid>,
    pub tenant_id: Vec<Uuid>,
    /// As of the end of the batch: attempts recorded in the same batch are folded in, so
    /// the row is written once instead of inserted and then updated.
    pub status: Vec<DeliveryStatus>,
    pub attempt_count: Vec<i32>,
    pub last_attempt_at: Vec<Option<DateTime<Utc>>>,
    pub next_attempt_at: Vec<Option<DateTime<Utc>>>,
    pub last_http_status: Vec<Option<i32>>,
    pub last_error_code: Vec<Option<&'static str>>,
}

#[derive(Default)]
pub struct AttemptRows {
    pub attempt_id: Vec<Uuid>,
    pub tenant_id: Vec<Uuid>,
    pub event_id: Vec<Uuid>,
    pub endpoint_id: Vec<Uuid>,
    pub attempt_number: Vec<i32>,
    pub scheduled_at: Vec<DateTime<Utc>>,
    pub started_at: Vec<DateTime<Utc>>,
    pub finished_at: Vec<DateTime<Utc>>,
    pub http_status: Vec<Option<i32>>,
    pub error_code: Vec<Option<&'static str>>,
    pub error_message: Vec<Option<String>>,
    pub latency_ms: Vec<i32>,
    pub outcome: Vec<&'static str>,
    pub next_attempt_at: Vec<Option<DateTime<Utc>>>,
    pub trace_id: Vec<String>,
    pub log_sequence: Vec<i64>,
    pub response_body_hash: Vec<Option<String>>,
    pub request_bytes: Vec<i32>,
    pub response_bytes: Vec<i32>,
}

/// The latest state of each delivery touched by the batch.
#[derive(Default)]
pub struct DeliveryUpdates {
    by_key: HashMap<(Uuid, Uuid), DeliveryUpdate>,
}

pub struct DeliveryUpdate {
    pub attempts: i32,
    pub latest_attempt_number: u32,
    pub status: DeliveryStatus,
    pub finished_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub http_status: Option<i32>,
    pub error_code: Option<&'static str>,
}

#[derive(Default)]
pub struct DeliveryUpdateRows {
    pub event_id: Vec<Uuid>,
    pub endpoint_id: Vec<Uuid>,
    pub attempts: Vec<i32>,
    pub status: Vec<DeliveryStatus>,
    pub finished_at: Vec<DateTime<Utc>>,
    pub next_attempt_at: Vec<Option<DateTime<Utc>>>,
    pub http_status: Vec<Option<i32>>,
    pub error_code: Vec<Option<&'static str>>,
}

/// Deferred attempts: the latest deferral of each delivery touched by the batch.
#[derive(Default)]
pub struct Deferrals {
    by_key: HashMap<(Uuid, Uuid), (u32, DateTime<Utc>, DeferralReason)>,
}

#[derive(Default)]
pub struct DeferralRows {
    pub event_id: Vec<Uuid>,
    pub endpoint_id: Vec<Uuid>,
    pub attempt_number: Vec<i32>,
    pub until: Vec<DateTime<Utc>>,
    pub reason: Vec<&'static str>,
}

impl Deferrals {
    /// Messages come in log order, so a later deferral replaces an earlier one.
    pub fn record(&mut self, deferred: &DeliveryDeferred) {
        self.by_key.insert(
            (deferred.event_id.as_uuid(), deferred.endpoint_id.as_uuid()),
            (deferred.attempt_number, deferred.until, deferred.reason),
        );
    }

    /// Deliveries deferred.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn into_rows(self) -> DeferralRows {
        let mut rows = DeferralRows::default();
        for ((event_id, endpoint_id), (attempt_number, until, reason)) in self.by_key {
            rows.event_id.push(event_id);
            rows.endpoint_id.push(endpoint_id);
            rows.attempt_number
                .push(attempt_number.min(i32::MAX as u32) as i32);
            rows.until.push(until);
            rows.reason.push(reason.as_str());
        }
        rows
    }
}

/// The words of `values` (statuses), as a Postgres `text[]` column binds them.
pub fn words<T: Copy>(values: &[T], word: fn(T) -> &'static str) -> Vec<&'static str> {
    values.iter().map(|&value| word(value)).collect()
}

impl EventRows {
    pub fn push(&mut self, event: &EventAccepted, sequence: u64, deliveries: &mut NewDeliveryRows) {
        self.event_id.push(event.event_id.as_uuid());
        self.tenant_id.push(event.tenant_id.as_uuid());
        self.event_type.push(event.event_type.clone());
        self.payload.push(event.payload.get().to_owned());
        self.idempotency_key.push(event.idempotency_key.clone());
        self.trace_id.push(event.trace_id.clone());
        self.accepted_at.push(event.accepted_at);
        // Its deliveries are new: all pending, none attempted. By the rule it is `pending`,
        // or `delivered` when it reaches no endpoint (nothing is left to do).
        let new_deliveries: &[(DeliveryStatus, u32)] = if event.endpoint_ids.is_empty() {
            &[]
        } else {
            &[(DeliveryStatus::Pending, 0)]
        };
        self.status.push(EventStatus::of_deliveries(new_deliveries));
        self.log_sequence.push(sequence as i64);
        self.target_endpoints
            .push(event.target_endpoints.as_ref().map(|targets| {
                targets
                    .iter()
                    .map(|target| target.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }));
        self.deliver_after.push(event.deliver_after);
        self.expires_at.push(event.expires_at);
        for endpoint_id in &event.endpoint_ids {
            deliveries.event_id.push(event.event_id.as_uuid());
            deliveries.endpoint_id.push(endpoint_id.as_uuid());
            deliveries.tenant_id.push(event.tenant_id.as_uuid());
            deliveries.status.push(DeliveryStatus::Pending);
            deliveries.attempt_count.push(0);
            deliveries.last_attempt_at.push(None);
            // The first attempt is due at once, or when the event was scheduled for.
            deliveries.next_attempt_at.push(Some(event.due_since()));
            deliveries.last_http_status.push(None);
            deliveries.last_error_code.push(None);
        }
    }
}

impl AttemptRows {
    pub fn push(&mut self, attempt: &AttemptRecorded, sequence: u64) {
        self.attempt_id.push(attempt.attempt_id.as_uuid());
        self.tenant_id.push(attempt.tenant_id.as_uuid());
        self.event_id.push(attempt.event_id.as_uuid());
        self.endpoint_id.push(attempt.endpoint_id.as_uuid());
        self.attempt_number.push(attempt.attempt_number as i32);
        self.scheduled_at.push(attempt.scheduled_at);
        self.started_at.push(attempt.started_at);
        self.finished_at.push(attempt.finished_at);
        self.http_status.push(attempt.http_status.map(i32::from));
        self.error_code
            .push(attempt.error_class.map(|class| class.as_str()));
        self.error_message.push(attempt.error_message.clone());
        self.latency_ms
            .push(attempt.latency_ms.min(i32::MAX as u32) as i32);
        self.outcome.push(attempt.outcome.as_str());
        self.next_attempt_at.push(attempt.next_attempt_at);
        self.trace_id.push(attempt.trace_id.clone());
        self.log_sequence.push(sequence as i64);
        self.response_body_hash
            .push(attempt.response_body_hash.clone());
        self.request_bytes
            .push(i32::try_from(attempt.request_bytes).unwrap_or(i32::MAX));
        self.response_bytes
            .push(i32::try_from(attempt.response_bytes).unwrap_or(i32::MAX));
    }
}

impl DeliveryUpdates {
    pub fn record(&mut self, attempt: &AttemptRecorded) {
        let key = (attempt.event_id.as_uuid(), attempt.endpoint_id.as_uuid());
        let latest = DeliveryUpdate {
            attempts: 1,
            latest_attempt_number: attempt.attempt_number,
            status: DeliveryStatus::from(attempt.outcome),
            finished_at: attempt.finished_at,
            next_attempt_at: attempt.next_attempt_at,
            http_status: attempt.http_status.map(i32::from),
            error_code: attempt.error_class.map(|class| class.as_str()),
        };
        match self.by_key.get_mut(&key) {
            None => {
                self.by_key.insert(key, latest);
            }
            Some(existing) => {
                let attempts = existing.attempts + 1;
                if latest.latest_attempt_number >= existing.latest_attempt_number {
                    *existing = latest;
                }
                existing.attempts = attempts;
            }
        }
    }

    /// Applies the updates of deliveries created in this same batch to their new rows (and
    /// the resulting status to their events' new rows), leaving only updates of deliveries
    /// that already exist. Deliveries are only ever created together with their event, so
    /// an event inserted in this batch needs no status update afterwards.
    pub fn fold_into_new(&mut self, deliveries: &mut NewDeliveryRows, events: &mut EventRows) {
        if self.by_key.is_empty() {
            return;
        }
        for index in 0..deliveries.event_id.len() {
            let key = (deliveries.event_id[index], deliveries.endpoint_id[index]);
            if let Some(update) = self.by_key.remove(&key) {
                deliveries.status[index] = update.status;
                deliveries.attempt_count[index] += update.attempts;
                deliveries.last_attempt_at[index] = Some(update.finished_at);
                deliveries.next_attempt_at[index] = update.next_attempt_at;
                deliveries.last_http_status[index] = update.http_status;
                deliveries.last_error_code[index] = update.error_code;
            }
        }
        let mut by_event: HashMap<Uuid, Vec<(DeliveryStatus, u32)>> = HashMap::new();
        for index in 0..deliveries.event_id.len() {
            let attempts = u32::try_from(deliveries.attempt_count[index]).unwrap_or(0);
            by_event
                .entry(deliveries.event_id[index])
                .or_default()
                .push((deliveries.status[index], attempts));
        }
        for (index, event_id) in events.event_id.iter().enumerate() {
            if let Some(deliveries) = by_event.get(event_id) {
                events.status[index] = EventStatus::of_deliveries(deliveries);
            }
        }
    }

    /// Deliveries with an update.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn event_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.by_key.keys().map(|(event_id, _)| *event_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn into_rows(self) -> DeliveryUpdateRows {
        let mut rows = DeliveryUpdateRows::default();
        for ((event_id, endpoint_id), update) in self.by_key {
            rows.event_id.push(event_id);
            rows.endpoint_id.push(endpoint_id);
            rows.attempts.push(update.attempts);
            rows.status.push(update.status);
            rows.finished_at.push(update.finished_at);
            rows.next_attempt_at.push(update.next_attempt_at);
            rows.http_status.push(update.http_status);
            rows.error_code.push(update.error_code);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_schemas::{AttemptId, AttemptOutcome, EndpointId, ErrorClass, EventId, TenantId};

    fn event(endpoints: &[EndpointId]) -> EventAccepted {
        serde_json::from_value(serde_json::json!({
            "event_id": EventId::generate(),
            "tenant_id": TenantId::generate(),
            "event_type": "t",
            "payload": {},
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "accepted_at": Utc::now(),
            "endpoint_ids": endpoints,
        }))
        .expect("an event")
    }

    fn attempt(
        event: &EventAccepted,
        endpoint_id: EndpointId,
        outcome: AttemptOutcome,
    ) -> AttemptRecorded {
        AttemptRecorded {
            attempt_id: AttemptId::generate(),
            event_id: event.event_id,
            endpoint_id,
            tenant_id: event.tenant_id,
            trace_id: event.trace_id.clone(),
            event_type: event.event_type.clone(),
            attempt_number: 1,
            event_accepted_at: event.accepted_at,
            scheduled_at: event.accepted_at,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            http_status: Some(if outcome == AttemptOutcome::Succeeded {
                200
            } else {
                503
            }),
            error_class: (outcome != AttemptOutcome::Succeeded).then_some(ErrorClass::Http5xx),
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
    fn a_new_event_is_pending_unless_it_reaches_no_endpoint() {
        let mut events = EventRows::default();
        let mut deliveries = NewDeliveryRows::default();
        events.push(&event(&[]), 1, &mut deliveries);
        events.push(
            &event(&[EndpointId::generate(), EndpointId::generate()]),
            2,
            &mut deliveries,
        );
        assert_eq!(
            events.status,
            [EventStatus::Delivered, EventStatus::Pending]
        );
        assert_eq!(
            deliveries.status,
            [DeliveryStatus::Pending, DeliveryStatus::Pending]
        );
    }

    #[test]
    fn attempts_on_deliveries_created_in_the_same_batch_are_written_with_them() {
        let (first, second) = (EndpointId::generate(), EndpointId::generate());
        let fresh = event(&[first, second]);
        let older = event(&[first]);
        let mut events = EventRows::default();
        let mut deliveries = NewDeliveryRows::default();
        events.push(&fresh, 10, &mut deliveries);
        let mut updates = DeliveryUpdates::default();
        updates.record(&attempt(&fresh, first, AttemptOutcome::Succeeded));
        updates.record(&attempt(&older, first, AttemptOutcome::Failed));

        updates.fold_into_new(&mut deliveries, &mut events);

        assert_eq!(
            deliveries.status,
            [DeliveryStatus::Succeeded, DeliveryStatus::Pending]
        );
        assert_eq!(deliveries.attempt_count, [1, 0]);
        assert_eq!(deliveries.last_http_status, [Some(200), None]);
        assert!(deliveries.last_attempt_at[0].is_some());
        assert_eq!(events.status, [EventStatus::Delivering]);
        // Only the delivery that already existed is left for the UPDATE.
        assert_eq!(updates.event_ids(), [older.event_id.as_uuid()]);
    }
}
