//! This process's circuit breakers, one per endpoint, kept in step with other workers through
//! the `endpoint.circuit_*` messages every worker publishes when a breaker changes.
//!
//! Every change goes through one place that also keeps `herald_breakers_open` (open or
//! half-open breakers) in step: a count moved on each change, never a recount of the map.

use crate::circuit_breaker::{
    Admission, BreakerPolicy, BreakerState, CircuitBreaker, Health, Transition,
};
use crate::retry_policy::AttemptResult;
use chrono::{DateTime, Utc};
use herald_schemas::{EndpointId, ErrorClass};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

type Breakers = HashMap<EndpointId, CircuitBreaker>;

pub struct EndpointBreakers {
    policy: BreakerPolicy,
    breakers: Mutex<Breakers>,
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
        breakers.get(&endpoint_id)?.parked_until(&self.policy, now)
    }

    /// An endpoint without an entry has a closed breaker: nothing is stored for it.
    pub fn admit(&self, endpoint_id: EndpointId, now: DateTime<Utc>) -> Admission {
        self.change(endpoint_id, |breakers| {
            breakers
                .get_mut(&endpoint_id)
                .map_or(Admission::Send, |breaker| breaker.admit(&self.policy, now))
        })
        .unwrap_or(Admission::Send)
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
        self.change(endpoint_id, |breakers| {
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
        })
        .flatten()
    }

    pub fn opened_elsewhere(&self, endpoint_id: EndpointId, until: DateTime<Utc>) {
        self.change(endpoint_id, |breakers| {
            breakers
                .entry(endpoint_id)
                .or_default()
                .opened_elsewhere(until);
        });
    }

    pub fn closed_elsewhere(&self, endpoint_id: EndpointId) {
        self.change(endpoint_id, |breakers| {
            breakers.remove(&endpoint_id);
        });
    }

    /// Runs `change` on the map under the lock and counts `endpoint_id`'s breaker into or out
    /// of `herald_breakers_open` if it opened or closed. None when the lock is poisoned.
    fn change<T>(
        &self,
        endpoint_id: EndpointId,
        change: impl FnOnce(&mut Breakers) -> T,
    ) -> Option<T> {
        let mut breakers = self.breakers.lock().ok()?;
        let was_open = is_open(breakers.get(&endpoint_id));
        let outcome = change(&mut breakers);
        match (was_open, is_open(breakers.get(&endpoint_id))) {
            (false, true) => herald_metrics::metrics().breakers_opened(1),
            (true, false) => herald_metrics::metrics().breakers_opened(-1),
            _ => {}
        }
        Some(outcome)
    }
}

/// A delivery service that stops (or a test's runner dropped) no longer holds its breakers
/// open: take them out of the process's count.
impl Drop for EndpointBreakers {
    fn drop(&mut self) {
        let breakers = self
            .breakers
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let open = breakers
            .values()
            .filter(|breaker| is_open(Some(breaker)))
            .count();
        herald_metrics::metrics().breakers_opened(-i64::try_from(open).unwrap_or(0));
    }
}

/// Open or half-open: what `herald_breakers_open` counts. No entry is a closed breaker.
fn is_open(breaker: Option<&CircuitBreaker>) -> bool {
    breaker.is_some_and(|breaker| !matches!(breaker.state(), BreakerState::Closed { .. }))
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

    /// Both tests move the process-wide `herald_breakers_open`; they take turns.
    static GAUGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// `herald_breakers_open` as rendered.
    fn breakers_open() -> i64 {
        let text = herald_metrics::metrics().render();
        text.lines()
            .find_map(|line| line.strip_prefix("herald_breakers_open "))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    fn failed() -> AttemptResult {
        AttemptResult::Retryable {
            class: ErrorClass::Http5xx,
            retry_after: None,
        }
    }

    /// Operational deliveries failing without end never open their endpoint's breaker (which
    /// would be announced), yet their successes still close one that producers' events opened.
    #[test]
    fn operational_failures_never_open_a_breaker_but_their_success_closes_one() {
        let _turn = GAUGE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let breakers = EndpointBreakers::new(BreakerPolicy::default());
        let endpoint_id = EndpointId::generate();
        let now = Utc::now();
        for _ in 0..100 {
            assert_eq!(breakers.record(endpoint_id, &failed(), false, now), None);
        }
        assert_eq!(breakers.admit(endpoint_id, now), Admission::Send);
        let opened = (0..BreakerPolicy::default().failure_threshold)
            .filter_map(|_| breakers.record(endpoint_id, &failed(), true, now))
            .collect::<Vec<_>>();
        assert!(matches!(opened.as_slice(), [Transition::Opened { .. }]));
        let later = now + chrono::Duration::hours(1);
        assert_eq!(breakers.admit(endpoint_id, later), Admission::Probe);
        assert_eq!(
            breakers.record(endpoint_id, &failed(), false, later),
            None,
            "an operational probe that fails says nothing"
        );
        assert_eq!(breakers.admit(endpoint_id, later), Admission::Probe);
        assert_eq!(
            breakers.record(endpoint_id, &AttemptResult::Succeeded, false, later),
            Some(Transition::Closed)
        );
    }

    #[test]
    fn the_open_count_follows_openings_and_closings() {
        let _turn = GAUGE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = breakers_open();
        let breakers = EndpointBreakers::new(BreakerPolicy {
            failure_threshold: 2,
            open_for: std::time::Duration::ZERO,
            max_open_for: std::time::Duration::ZERO,
            probe_timeout: std::time::Duration::ZERO,
        });
        let (failing, elsewhere) = (EndpointId::generate(), EndpointId::generate());
        let now = Utc::now();
        breakers.record(failing, &failed(), true, now);
        assert_eq!(breakers_open(), before, "one failure keeps it closed");
        breakers.record(failing, &failed(), true, now);
        assert_eq!(breakers_open(), before + 1, "opened");
        assert_eq!(breakers.admit(failing, now), Admission::Probe);
        assert_eq!(breakers_open(), before + 1, "half-open still counts");
        breakers.record(failing, &AttemptResult::Succeeded, true, now);
        assert_eq!(breakers_open(), before, "closed by the probe");

        breakers.opened_elsewhere(elsewhere, now);
        breakers.opened_elsewhere(elsewhere, now);
        assert_eq!(
            breakers_open(),
            before + 1,
            "opened once, however often told"
        );
        breakers.closed_elsewhere(elsewhere);
        breakers.closed_elsewhere(elsewhere);
        assert_eq!(breakers_open(), before);

        breakers.opened_elsewhere(elsewhere, now);
        drop(breakers);
        assert_eq!(
            breakers_open(),
            before,
            "a dropped service holds nothing open"
        );
    }
}
