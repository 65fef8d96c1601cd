//! A per-endpoint circuit breaker as a pure state machine: after `failure_threshold`
//! consecutive failures it opens for `open_for` (doubling each time it re-opens, up to
//! `max_open_for`); then one probe is let through (half-open); its success closes the
//! breaker, its failure opens it again for longer. While open, deliveries are parked until the
//! breaker may probe again, and while the probe is out until its answer is certain; they are
//! neither attempted nor counted as attempts.

use chrono::{DateTime, Duration, Utc};

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub open_for: std::time::Duration,
    pub max_open_for: std::time::Duration,
    /// The longest a probe can take: the request timeout. By then its answer is known.
    pub probe_timeout: std::time::Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: std::time::Duration::from_secs(5),
            max_open_for: std::time::Duration::from_secs(600),
            probe_timeout: std::time::Duration::from_secs(15),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: DateTime<Utc>,
        times_opened: u32,
    },
    HalfOpen {
        times_opened: u32,
        /// When the probe now out was let through (`None`: none is out).
        probe_sent_at: Option<DateTime<Utc>>,
    },
}

/// May a delivery to this endpoint be attempted now?
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    Send,
    /// The one request that tests whether the endpoint recovered.
    Probe,
    /// Not now; try again at `until`.
    Park {
        until: DateTime<Utc>,
    },
}

/// What an attempt says about the endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Health {
    /// It answered as a working server does (2xx, or a client error it chose to send).
    Alive,
    /// It failed as a broken or unreachable server does (5xx, timeout, connection error).
    Failing,
    /// Says nothing either way (e.g. 429, or our own refusal).
    Unknown,
}

/// A change worth telling the rest of the system about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    Opened {
        until: DateTime<Utc>,
        consecutive_failures: u32,
    },
    Closed,
}

/// While a probe is out, other deliveries wait at least this long before asking again.
const PROBE_WAIT_MS: i64 = 1000;

/// Until when a delivery that finds a probe out waits: until the probe's answer is certain
/// (`probe_timeout` after it was sent), at least [`PROBE_WAIT_MS`]. `park` then spreads it by
/// about as long as it waits, as after an open breaker. Asking again as soon as the probe had
/// been out as long again (a doubling wait) still meant three or four asks per probe from every
/// parked delivery, each a trip through the retry queue: behind an endpoint that does not
/// answer, thousands of deliveries came back within a second and stalled delivery for every
/// endpoint (docs/PERFORMANCE.md, `failing`). Now a delivery asks once per probe; one that
/// asked while a probe that then succeeded was out is back at most about twice the request
/// timeout after the probe was sent.
pub fn probe_wait_until(
    policy: &BreakerPolicy,
    sent_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let answered_by = sent_at + Duration::from_std(policy.probe_timeout).unwrap_or_default();
    answered_by.max(now + Duration::milliseconds(PROBE_WAIT_MS))
}

#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreaker {
    state: BreakerState,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }
}

impl CircuitBreaker {
    pub fn state(&self) -> &BreakerState {
        &self.state
    }

    /// Parked until this time, if the breaker is open now; does not change the state.
    pub fn parked_until(
        &self,
        policy: &BreakerPolicy,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self.state {
            BreakerState::Open { until, .. } if now < until => Some(until),
            BreakerState::HalfOpen {
                probe_sent_at: Some(sent_at),
                ..
            } => Some(probe_wait_until(policy, sent_at, now)),
            _ => None,
        }
    }

    pub fn admit(&mut self, policy: &BreakerPolicy, now: DateTime<Utc>) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Send,
            BreakerState::Open { until, .. } if now < until => Admission::Park { until },
            BreakerState::Open { times_opened, .. }
            | BreakerState::HalfOpen {
                times_opened,
                probe_sent_at: None,
            } => {
                self.state = BreakerState::HalfOpen {
                    times_opened,
                    probe_sent_at: Some(now),
                };
                Admission::Probe
            }
            BreakerState::HalfOpen {
                probe_sent_at: Some(sent_at),
                ..
            } => Admission::Park {
                until: probe_wait_until(policy, sent_at, now),
            },
        }
    }

    pub fn record(
        &mut self,
        policy: &BreakerPolicy,
        health: Health,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        match (&self.state, health) {
            (BreakerState::Closed { .. }, Health::Alive) => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
                None
            }
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                Health::Failing,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= policy.failure_threshold.max(1) {
                    Some(self.open(policy, 1, failures, now))
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                    None
                }
            }
            (BreakerState::HalfOpen { .. }, Health::Alive) => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
                Some(Transition::Closed)
            }
            (BreakerState::HalfOpen { times_opened, .. }, Health::Failing) => {
                let times = times_opened + 1;
                Some(self.open(policy, times, policy.failure_threshold, now))
            }
            (BreakerState::HalfOpen { times_opened, .. }, Health::Unknown) => {
                self.state = BreakerState::HalfOpen {
                    times_opened: *times_opened,
                    probe_sent_at: None,
                };
                None
            }
            // Results of requests that started before the breaker opened say nothing new.
            (BreakerState::Open { .. }, _) | (BreakerState::Closed { .. }, Health::Unknown) => None,
        }
    }

    /// Another worker opened this endpoint's breaker (learned from the log).
    pub fn opened_elsewhere(&mut self, until: DateTime<Utc>) {
        match self.state {
            BreakerState::Open { until: current, .. } if current >= until => {}
            BreakerState::Open { times_opened, .. }
            | BreakerState::HalfOpen { times_opened, .. } => {
                self.state = BreakerState::Open {
                    until,
                    times_opened,
                };
            }
            BreakerState::Closed { .. } => {
                self.state = BreakerState::Open {
                    until,
                    times_opened: 1,
                };
            }
        }
    }

    /// Another worker's probe succeeded (learned from the log).
    pub fn closed_elsewhere(&mut self) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
    }

    fn open(
        &mut self,
        policy: &BreakerPolicy,
        times_opened: u32,
        failures: u32,
        now: DateTime<Utc>,
    ) -> Transition {
        let until = now + open_duration(policy, times_opened);
        self.state = BreakerState::Open {
            until,
            times_opened,
        };
        Transition::Opened {
            until,
            consecutive_failures: failures,
        }
    }
}

pub fn open_duration(policy: &BreakerPolicy, times_opened: u32) -> Duration {
    let base = policy.open_for.as_millis() as f64;
    let grown = base * 2f64.powi(times_opened.saturating_sub(1).min(30) as i32);
    let capped = grown.min(policy.max_open_for.as_millis() as f64).max(0.0);
    Duration::milliseconds(capped as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 3,
            open_for: std::time::Duration::from_secs(5),
            max_open_for: std::time::Duration::from_secs(60),
            probe_timeout: std::time::Duration::from_secs(15),
        }
    }

    #[test]
    fn opens_after_the_threshold_then_probes_once_and_closes_on_success() {
        let policy = policy();
        let mut breaker = CircuitBreaker::default();
        let now = Utc::now();
        assert_eq!(breaker.record(&policy, Health::Failing, now), None);
        assert_eq!(breaker.record(&policy, Health::Failing, now), None);
        let opened = breaker.record(&policy, Health::Failing, now);
        assert!(matches!(
            opened,
            Some(Transition::Opened {
                consecutive_failures: 3,
                ..
            })
        ));
        assert!(matches!(
            breaker.admit(&policy, now),
            Admission::Park { .. }
        ));
        let later = now + Duration::seconds(6);
        assert_eq!(breaker.admit(&policy, later), Admission::Probe);
        assert!(
            matches!(breaker.admit(&policy, later), Admission::Park { .. }),
            "only one probe at a time"
        );
        assert_eq!(
            breaker.record(&policy, Health::Alive, later),
            Some(Transition::Closed)
        );
        assert_eq!(breaker.admit(&policy, later), Admission::Send);
    }

    #[test]
    fn a_failed_probe_reopens_for_longer() {
        let policy = policy();
        let mut breaker = CircuitBreaker::default();
        let now = Utc::now();
        for _ in 0..3 {
            breaker.record(&policy, Health::Failing, now);
        }
        let probe_time = now + Duration::seconds(6);
        assert_eq!(breaker.admit(&policy, probe_time), Admission::Probe);
        match breaker.record(&policy, Health::Failing, probe_time) {
            Some(Transition::Opened { until, .. }) => {
                assert_eq!(until - probe_time, Duration::seconds(10))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn successes_reset_the_count() {
        let policy = policy();
        let mut breaker = CircuitBreaker::default();
        let now = Utc::now();
        for _ in 0..10 {
            breaker.record(&policy, Health::Failing, now);
            breaker.record(&policy, Health::Failing, now);
            breaker.record(&policy, Health::Alive, now);
        }
        assert_eq!(breaker.admit(&policy, now), Admission::Send);
    }

    proptest! {
        #[test]
        fn never_more_than_one_probe_and_never_sends_while_open(
            steps in proptest::collection::vec((0u8..4, 0i64..3000), 1..200)
        ) {
            let policy = policy();
            let mut breaker = CircuitBreaker::default();
            let mut now = Utc::now();
            let mut probes_out = 0u32;
            for (action, advance_ms) in steps {
                now += Duration::milliseconds(advance_ms);
                match action {
                    0 => match breaker.admit(&policy, now) {
                        Admission::Probe => {
                            probes_out += 1;
                            prop_assert!(probes_out <= 1, "two probes in flight");
                        }
                        Admission::Send => {
                            let closed = matches!(breaker.state(), BreakerState::Closed { .. });
                            prop_assert!(closed, "sent while not closed");
                        }
                        Admission::Park { until } => prop_assert!(until > now),
                    },
                    other => {
                        let health = [Health::Alive, Health::Failing, Health::Unknown][usize::from(other - 1)];
                        let was_half_open = matches!(breaker.state(), BreakerState::HalfOpen { .. });
                        breaker.record(&policy, health, now);
                        if was_half_open { probes_out = 0; }
                    }
                }
                if let BreakerState::Open { until, .. } = breaker.state() {
                    prop_assert!(*until - now <= Duration::seconds(60));
                }
            }
        }

        /// A delivery that keeps finding the probe out asks a few times per probe, however
        /// long the probe takes, and is back within about twice the probe's time.
        #[test]
        fn a_parked_delivery_asks_once_per_probe_and_is_back_when_it_is_answered(
            probe_ms in 1i64..=15_000,
            first_ask_permille in 0i64..1000,
        ) {
            let policy = policy();
            let mut breaker = CircuitBreaker::default();
            let start = Utc::now();
            for _ in 0..3 {
                breaker.record(&policy, Health::Failing, start);
            }
            let sent_at = start + Duration::seconds(6);
            prop_assert_eq!(breaker.admit(&policy, sent_at), Admission::Probe);
            // A probe takes at most the request timeout (15 s here).
            let answered_at = sent_at + Duration::milliseconds(probe_ms);
            let first_ask = sent_at + Duration::milliseconds(probe_ms * first_ask_permille / 1000);
            let mut ask = first_ask;
            let mut asks = 0;
            while ask < answered_at {
                asks += 1;
                match breaker.admit(&policy, ask) {
                    Admission::Park { until } => {
                        prop_assert!(until > ask);
                        ask = until;
                    }
                    other => prop_assert!(false, "{other:?} while the probe is out"),
                }
            }
            prop_assert_eq!(asks, 1, "asks during a {} ms probe", probe_ms);
            // Back no later than the probe's timeout (or a second after asking).
            let latest = (sent_at + Duration::seconds(15)).max(first_ask + Duration::seconds(1));
            prop_assert!(ask <= latest);
        }

        #[test]
        fn open_time_grows_and_is_capped(times in 1u32..100) {
            let policy = policy();
            let duration = open_duration(&policy, times);
            prop_assert!(duration >= Duration::seconds(5) && duration <= Duration::seconds(60));
            prop_assert!(open_duration(&policy, times + 1) >= duration);
        }
    }
}
