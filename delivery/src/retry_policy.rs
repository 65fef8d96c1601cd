//! The decision "what happens to this delivery after this attempt", as a pure function over
//! the policy, the attempt count, the times involved and the attempt's classified result.
//! Everything with I/O (sending, scheduling, publishing) lives around it.

use chrono::{DateTime, Utc};
use herald_schemas::{AttemptOutcome, ErrorClass, RetryPolicyOverride};
use std::time::Duration;

/// Exponential backoff with jitter, bounded by a number of attempts and a deadline counted
/// from the event's acceptance.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub multiplier: f64,
    pub max_delay: Duration,
    /// How long after acceptance a delivery may still be attempted.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// About three days: 5 s, ~15 s, ~45 s, ~2 min, ~7 min, ~20 min, ~1 h, ~3 h, then every
    /// ~8 h until 18 attempts or 72 h after acceptance.
    fn default() -> Self {
        Self {
            max_attempts: 18,
            initial_delay: Duration::from_secs(5),
            multiplier: 3.0,
            max_delay: Duration::from_secs(8 * 3600),
            deadline: Duration::from_secs(72 * 3600),
        }
    }
}

/// What an attempt's result means for retrying, before the policy has its say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttemptResult {
    Succeeded,
    /// Worth trying again; `retry_after` is the receiver's own request, if it made one.
    Retryable {
        class: ErrorClass,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help.
    Final {
        class: ErrorClass,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub outcome: AttemptOutcome,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl RetryPolicy {
    /// This policy with an endpoint's own settings in place of the ones it overrides.
    pub fn with_override(&self, endpoint: &RetryPolicyOverride) -> RetryPolicy {
        let millis = |value: Option<u64>, default: Duration| {
            value.map(Duration::from_millis).unwrap_or(default)
        };
        let initial_delay = millis(endpoint.initial_delay_ms, self.initial_delay);
        RetryPolicy {
            max_attempts: endpoint.max_attempts.unwrap_or(self.max_attempts).max(1),
            initial_delay,
            multiplier: endpoint.multiplier.unwrap_or(self.multiplier),
            // An endpoint asking for a long first delay gets it even if the default cap is lower.
            max_delay: millis(endpoint.max_delay_ms, self.max_delay).max(initial_delay),
            deadline: millis(endpoint.deadline_ms, self.deadline),
        }
    }

    /// Decides after attempt number `attempt_number` (1-based) finished at `now`, for a
    /// delivery due since `due_since` (the deadline counts from there).
    /// `jitter` in `[0, 1)` spreads retries of many deliveries that failed together.
    pub fn decide(
        &self,
        attempt_number: u32,
        due_since: DateTime<Utc>,
        now: DateTime<Utc>,
        result: AttemptResult,
        jitter: f64,
    ) -> Decision {
        let retry_after = match result {
            AttemptResult::Succeeded => return Decision::done(AttemptOutcome::Succeeded),
            AttemptResult::Final { .. } => return Decision::done(AttemptOutcome::Failed),
            AttemptResult::Retryable { retry_after, .. } => retry_after,
        };
        if attempt_number >= self.max_attempts {
            return Decision::done(AttemptOutcome::DeadLettered);
        }
        let mut delay = self.backoff(attempt_number, jitter);
        if let Some(requested) = retry_after {
            delay = delay.max(requested.min(self.max_delay));
        }
        let next_attempt_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        let deadline = due_since + chrono::Duration::from_std(self.deadline).unwrap_or_default();
        if next_attempt_at > deadline {
            return Decision::done(AttemptOutcome::DeadLettered);
        }
        Decision {
            outcome: AttemptOutcome::RetryScheduled,
            next_attempt_at: Some(next_attempt_at),
        }
    }

    /// "Equal jitter": half the exponential delay is fixed, half is random, so retries are
    /// spread out but never come much earlier than the schedule says.
    pub fn backoff(&self, attempt_number: u32, jitter: f64) -> Duration {
        let exponent = attempt_number.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter))
    }
}

impl Decision {
    /// A retry that would come after the event expires is no retry: the delivery expires.
    pub fn within_expiry(self, expires_at: Option<DateTime<Utc>>) -> Self {
        match (self.next_attempt_at, expires_at) {
            (Some(next), Some(expires_at)) if next > expires_at => {
                Self::done(AttemptOutcome::Expired)
            }
            _ => self,
        }
    }

    fn done(outcome: AttemptOutcome) -> Self {
        Self {
            outcome,
            next_attempt_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn retryable() -> AttemptResult {
        AttemptResult::Retryable {
            class: ErrorClass::Http5xx,
            retry_after: None,
        }
    }

    #[test]
    fn default_schedule_starts_within_seconds_and_spans_about_three_days() {
        let policy = RetryPolicy::default();
        assert!(policy.backoff(1, 0.99) <= Duration::from_secs(5));
        let mut total = Duration::ZERO;
        for attempt in 1..policy.max_attempts {
            total += policy.backoff(attempt, 1.0);
        }
        assert!(total >= Duration::from_secs(60 * 3600), "{total:?}");
        assert!(policy.deadline == Duration::from_secs(72 * 3600));
    }

    #[test]
    fn an_endpoint_override_replaces_only_what_it_sets() {
        let default = RetryPolicy::default();
        assert_eq!(
            default.with_override(&RetryPolicyOverride::default()),
            default
        );
        let policy = default.with_override(&RetryPolicyOverride {
            max_attempts: Some(3),
            initial_delay_ms: Some(10 * 3600 * 1000),
            ..Default::default()
        });
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.initial_delay, Duration::from_secs(10 * 3600));
        assert_eq!(policy.max_delay, policy.initial_delay);
        assert_eq!(policy.multiplier, default.multiplier);
        assert_eq!(policy.deadline, default.deadline);
    }

    #[test]
    fn success_and_final_failures_end_the_delivery() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let success = policy.decide(1, now, now, AttemptResult::Succeeded, 0.5);
        assert_eq!(success.outcome, AttemptOutcome::Succeeded);
        let final_failure = AttemptResult::Final {
            class: ErrorClass::Http4xx,
        };
        assert_eq!(
            policy.decide(1, now, now, final_failure, 0.5).outcome,
            AttemptOutcome::Failed
        );
    }

    #[test]
    fn a_retry_past_expiry_expires_the_delivery() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let decision = policy.decide(1, now, now, retryable(), 0.0);
        let next = decision.next_attempt_at.expect("retry");
        assert_eq!(decision.within_expiry(Some(next)), decision);
        assert_eq!(decision.within_expiry(None), decision);
        let expired = decision.within_expiry(Some(next - chrono::Duration::milliseconds(1)));
        assert_eq!(expired.outcome, AttemptOutcome::Expired);
        assert_eq!(expired.next_attempt_at, None);
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let asked = |seconds| AttemptResult::Retryable {
            class: ErrorClass::Http429,
            retry_after: Some(Duration::from_secs(seconds)),
        };
        let decision = policy.decide(1, now, now, asked(120), 0.0);
        assert_eq!(
            decision.next_attempt_at,
            Some(now + chrono::Duration::seconds(120))
        );
        let decision = policy.decide(1, now, now, asked(10 * 86_400), 0.0);
        assert_eq!(
            decision.next_attempt_at,
            Some(now + chrono::Duration::hours(8))
        );
    }

    proptest! {
        #[test]
        fn retries_stay_within_bounds(
            attempt in 1u32..40, jitter in 0.0f64..1.0, age_secs in 0i64..400_000,
        ) {
            let policy = RetryPolicy::default();
            let now = Utc::now();
            let accepted_at = now - chrono::Duration::seconds(age_secs);
            let decision = policy.decide(attempt, accepted_at, now, retryable(), jitter);
            match decision.outcome {
                AttemptOutcome::RetryScheduled => {
                    let next = decision.next_attempt_at.expect("retry has a time");
                    prop_assert!(attempt < policy.max_attempts);
                    prop_assert!(next > now);
                    prop_assert!(next - now <= chrono::Duration::from_std(policy.max_delay).expect("fits"));
                    prop_assert!(next <= accepted_at + chrono::Duration::from_std(policy.deadline).expect("fits"));
                }
                AttemptOutcome::DeadLettered => prop_assert!(decision.next_attempt_at.is_none()),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        #[test]
        fn any_endpoint_policy_keeps_retries_within_its_bounds(
            max_attempts in 1u32..50,
            initial_delay_ms in 100u64..86_400_000,
            multiplier in 1.0f64..10.0,
            max_delay_ms in 100u64..604_800_000,
            deadline_ms in 1_000u64..604_800_000,
            attempt in 1u32..60, jitter in 0.0f64..1.0, age_ms in 0i64..700_000_000,
        ) {
            let policy = RetryPolicy::default().with_override(&RetryPolicyOverride {
                max_attempts: Some(max_attempts),
                initial_delay_ms: Some(initial_delay_ms),
                multiplier: Some(multiplier),
                max_delay_ms: Some(max_delay_ms),
                deadline_ms: Some(deadline_ms),
            });
            let now = Utc::now();
            let accepted_at = now - chrono::Duration::milliseconds(age_ms);
            let decision = policy.decide(attempt, accepted_at, now, retryable(), jitter);
            if let Some(next) = decision.next_attempt_at {
                prop_assert!(attempt < max_attempts);
                prop_assert!(next > now);
                prop_assert!(next - now <= chrono::Duration::milliseconds(max_delay_ms.max(initial_delay_ms) as i64));
                prop_assert!(next <= accepted_at + chrono::Duration::milliseconds(deadline_ms as i64));
            } else {
                prop_assert_eq!(decision.outcome, AttemptOutcome::DeadLettered);
            }
        }

        #[test]
        fn backoff_grows_with_attempts_and_respects_the_jitter_band(attempt in 1u32..30, jitter in 0.0f64..1.0) {
            let policy = RetryPolicy::default();
            let floor = policy.backoff(attempt, 0.0);
            let delay = policy.backoff(attempt, jitter);
            prop_assert!(delay >= floor && delay <= floor * 2);
            prop_assert!(policy.backoff(attempt + 1, 0.0) >= floor);
        }
    }
}
