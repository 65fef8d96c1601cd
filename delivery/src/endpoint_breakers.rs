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

    /// Tells the endpoint's breaker how an attempt went. With `failures_count` false (an
    /// operational event's delivery) a failure says nothing and only a success is heard.
    pub fn record(
        &self,
        endpoint_id: EndpointId,
        result: &AttemptResult,
        failures_count: bool,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        let health = match health(result) {
            Health::Failing if !failures_count => Health::Unknown,
            health => health,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> AttemptResult {
        AttemptResult::Retryable {
            class: ErrorClass::Http5xx,
            retry_after: None,
        }
    }

    /// Operational deliveries failing without end never open their endpoint's breaker (which
    /// would be announced), yet their successes still close one that producers' events opened.
    #[test]
    fn operational_failures_never_open_a_breaker_but_their_success_closes_one() {
        let breakers = EndpointBreakers::new(BreakerPolicy::default());
        let endpoint_id = EndpointId::generate();
        let now = Utc::now();
        for _ in 0..100 {
            assert_eq!(breakers.record(endpoint_id, &failure(), false, now), None);
        }
        assert_eq!(breakers.admit(endpoint_id, now), Admission::Send);
        let opened = (0..BreakerPolicy::default().failure_threshold)
            .filter_map(|_| breakers.record(endpoint_id, &failure(), true, now))
            .collect::<Vec<_>>();
        assert!(matches!(opened.as_slice(), [Transition::Opened { .. }]));
        let later = now + chrono::Duration::hours(1);
        assert_eq!(breakers.admit(endpoint_id, later), Admission::Probe);
        assert_eq!(
            breakers.record(endpoint_id, &failure(), false, later),
            None,
            "an operational probe that fails says nothing"
        );
        assert_eq!(breakers.admit(endpoint_id, later), Admission::Probe);
        assert_eq!(
            breakers.record(endpoint_id, &AttemptResult::Succeeded, false, later),
            Some(Transition::Closed)
        );
    }
}
