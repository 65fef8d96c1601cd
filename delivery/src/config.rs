//! Configuration of the delivery service (environment variables `HERALD_<FIELD>`).

use crate::circuit_breaker::BreakerPolicy;
use crate::retry_policy::RetryPolicy;
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// CIDRs receivers may resolve to although they are loopback/private/link-local.
    pub allowed_target_cidrs: String,
    /// HTTP requests in flight at once in this process.
    pub max_in_flight: usize,
    /// HTTP requests in flight at once to one endpoint (also its keep-alive pool size).
    pub max_in_flight_per_endpoint: usize,
    pub connect_timeout_ms: u64,
    /// Longest wait for the receiver between reads, including for the first response byte.
    pub first_byte_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// How long the log waits for a worker's acknowledgement before redelivering; must exceed
    /// `request_timeout_ms` with margin.
    pub ack_wait_ms: u64,
    pub endpoint_cache_ttl_ms: u64,
    /// On shutdown, how long in-flight attempts may finish before they are handed back.
    pub shutdown_grace_ms: u64,
    /// Consecutive failures that open an endpoint's circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long a breaker first stays open; doubles on each re-opening up to the maximum.
    pub breaker_open_ms: u64,
    pub breaker_max_open_ms: u64,
    pub retry_max_attempts: u32,
    pub retry_initial_delay_ms: u64,
    pub retry_multiplier: f64,
    pub retry_max_delay_ms: u64,
    pub retry_deadline_ms: u64,
    /// Retry attempts this process makes a minute at most (0: no limit); retries over it wait
    /// for a later slot. First attempts are never held back by it.
    pub retry_budget_per_minute: u32,
    /// An unfinished delivery this far past due in the read model is taken for lost by the
    /// log and dispatched again (never less than `ack_wait_ms + request_timeout_ms`, the
    /// longest a delivery held by a process that died waits for the log to hand it out again).
    pub overdue_after_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        let breaker = BreakerPolicy::default();
        Self {
            allowed_target_cidrs: String::new(),
            max_in_flight: 1024,
            max_in_flight_per_endpoint: 64,
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 10_000,
            request_timeout_ms: 15_000,
            ack_wait_ms: 60_000,
            endpoint_cache_ttl_ms: 5_000,
            shutdown_grace_ms: 10_000,
            breaker_failure_threshold: breaker.failure_threshold,
            breaker_open_ms: breaker.open_for.as_millis() as u64,
            breaker_max_open_ms: breaker.max_open_for.as_millis() as u64,
            retry_max_attempts: retry.max_attempts,
            retry_initial_delay_ms: retry.initial_delay.as_millis() as u64,
            retry_multiplier: retry.multiplier,
            retry_max_delay_ms: retry.max_delay.as_millis() as u64,
            retry_deadline_ms: retry.deadline.as_millis() as u64,
            retry_budget_per_minute: 120_000,
            overdue_after_ms: 120_000,
        }
    }
}

impl DeliveryConfig {
    pub fn overdue_after(&self) -> Duration {
        Duration::from_millis(
            self.overdue_after_ms
                .max(self.ack_wait_ms + self.request_timeout_ms),
        )
    }

    pub fn breaker_policy(&self) -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: self.breaker_failure_threshold.max(1),
            open_for: Duration::from_millis(self.breaker_open_ms),
            max_open_for: Duration::from_millis(self.breaker_max_open_ms.max(self.breaker_open_ms)),
            probe_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry_max_attempts.max(1),
            initial_delay: Duration::from_millis(self.retry_initial_delay_ms),
            multiplier: self.retry_multiplier,
            max_delay: Duration::from_millis(self.retry_max_delay_ms),
            deadline: Duration::from_millis(self.retry_deadline_ms),
        }
    }
}
