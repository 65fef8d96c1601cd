//! Turns a batch of log messages into column arrays for set-based SQL: one statement per
//! table per batch instead of one per message.

use chrono::{DateTime, Utc};
use herald_schemas::{AttemptOutcome, AttemptRecorded, EventAccepted};
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
    pub status: Vec<&'static str>,
    pub log_sequence: Vec<i64>,
}

#[derive(Default)]
pub struct NewDeliveryRows {
    pub event_id: Vec<Uuid>,
    pub endpoint_id: Vec<Uuid>,
    pub tenant_id: Vec<Uuid>,
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
}

/// The latest state of each delivery touched by the batch.
#[derive(Default)]
pub struct DeliveryUpdates {
    by_key: HashMap<(Uuid, Uuid), DeliveryUpdate>,
}

pub struct DeliveryUpdate {
    pub attempts: i32,
    pub latest_attempt_number: u32,
    pub status: &'static str,
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
    pub status: Vec<&'static str>,
    pub finished_at: Vec<DateTime<Utc>>,
    pub next_attempt_at: Vec<Option<DateTime<Utc>>>,
    pub http_status: Vec<Option<i32>>,
    pub error_code: Vec<Option<&'static str>>,
}

pub fn delivery_status(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::RetryScheduled => "retrying",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::DeadLettered => "dead_lettered",
        AttemptOutcome::Expired => "expired",
    }
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
        // An event that reaches no endpoint has nothing left to do.
        self.status.push(if event.endpoint_ids.is_empty() {
            "delivered"
        } else {
            "pending"
        });
        self.log_sequence.push(sequence as i64);
        for endpoint_id in &event.endpoint_ids {
            deliveries.event_id.push(event.event_id.as_uuid());
            deliveries.endpoint_id.push(endpoint_id.as_uuid());
            deliveries.tenant_id.push(event.tenant_id.as_uuid());
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
    }
}

impl DeliveryUpdates {
    pub fn record(&mut self, attempt: &AttemptRecorded) {
        let key = (attempt.event_id.as_uuid(), attempt.endpoint_id.as_uuid());
        let latest = DeliveryUpdate {
            attempts: 1,
            latest_attempt_number: attempt.attempt_number,
            status: delivery_status(attempt.outcome),
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
