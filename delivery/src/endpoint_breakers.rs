//! This process's circuit breakers, one per endpoint, kept in step with other workers through
//! the `endpoint.circuit_*` messages every worker publishes when a breaker changes.

use crate::circuit_breaker::{Admission, BreakerPolicy, CircuitBreaker, Health, Transition};
use crate::retry_policy::AttemptResult;
use chrono::{DateTime, Utc};
use herald_schemas::{EndpointId, ErrorClass};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct EndpointBreakers {
    policy: BreakerPolicy,
    breakers: Mutex<HashMap<EndpointId, CircuitBreaker>>,
}

impl EndpointBreakers {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            breakers: Mutex::new(HashMap::new()),
        }
    }

    /// When a delivery must wait because the breaker is open; a cheap check before queueing.
    pub fn parked_until(
        &self,
        endpoint_id: EndpointId,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let breakers = self.breakers.lock().ok()?;
        breakers.get(&endpoint_id)?.parked_until(now)
    }

    /// An endpoint without an entry has a closed breaker: nothing is stored for it.
    pub fn admit(&self, endpoint_id: EndpointId, now: DateTime<Utc>) -> Admission {
        match self.breakers.lock() {
            Ok(mut breakers) => breakers
                .get_mut(&endpoint_id)
                .map_or(Admission::Send, |breaker| breaker.admit(now)),
            Err(_) => Admission::Send,
        }
    }

    pub fn record(
        &self,
        endpoint_id: EndpointId,
        result: &AttemptResult,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let health = health(result);
        let mut breakers = self.breakers.lock().ok()?;
        if health == Health::Alive && !breakers.contains_key(&endpoint_id) {
            // Healthy endpoints need no entry; keeps the map as small as the trouble.
            return None;
        }
        let breaker = breakers.entry(endpoint_id).or_default();
        let transition = breaker.record(&self.policy, health, now);
        if transition == Some(Transition::Closed) {
            breakers.remove(&endpoint_id);
        }
        transition
    }

    pub fn opened_elsewhere(&self, endpoint_id: EndpointId, until: DateTime<Utc>) {
        if let Ok(mut breakers) = self.breakers.lock() {
            breakers
                .entry(endpoint_id)
                .or_default()
                .opened_elsewhere(until);
        }
    }

    pub fn closed_elsewhere(&self, endpoint_id: EndpointId) {
        if let Ok(mut breakers) = self.breakers.lock() {
            breakers.remove(&endpoint_id);
        }
    }
}

/// What an attempt's result says about the endpoint (see the README's breaker section).
pub fn health(result: &AttemptResult) -> Health {
    match result {
        AttemptResult::Succeeded => Health::Alive,
        AttemptResult::Final {
            class: ErrorClass::Http3xx | ErrorClass::Http4xx,
        } => Health::Alive,
        AttemptResult::Final { .. } => Health::Unknown,
        AttemptResult::Retryable {
            class: ErrorClass::Http429,
            ..
        } => Health::Unknown,
        AttemptResult::Retryable { .. } => Health::Failing,
    }
}
