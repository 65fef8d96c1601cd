//! The checks made before an attempt, in their order, as one pure decision.
//!
//! Expired? Not due yet? Endpoint gone or disabled? Breaker open? Retry budget spent? Endpoint
//! busy? Paced by its rate limit? Admitted by the breaker? Several of these take something
//! when they pass (a budget token, a slot, a rate-limit token, the breaker's one probe), so
//! they are asked one at a time, and only while nothing before them has stopped the
//! delivery: a delivery that is going to wait must not have spent a token on a later check.
//!
//! [`Checks::next`] says what to do given what has been answered so far: ask the next gate,
//! or stop with a verdict (expire, wait, park, end unsent, send). The attempt runner asks
//! the gates (that part does I/O or takes tokens) and feeds the answers back.

use chrono::{DateTime, Utc};
use herald_schemas::{DeferralReason, ErrorClass};
use std::time::Duration;

/// A scheduled delivery this close to its time is attempted rather than queued again.
pub const SCHEDULE_SLACK: chrono::Duration = chrono::Duration::milliseconds(50);

/// The checks that take something or may make a delivery wait, in the order they are asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Is the endpoint's circuit breaker open? (Only reads it.)
    CircuitOpen,
    /// A token from the process's retry budget (retries outside ordered lanes only).
    RetryBudget,
    /// One of the endpoint's in-flight slots.
    EndpointSlot,
    /// A token from the endpoint's own rate limit (endpoints that have one).
    RateLimit,
    /// The breaker's admission, which may be its one half-open probe: once admitted, the
    /// request must be sent, so this comes last.
    BreakerAdmission,
}

impl Gate {
    pub const ORDER: [Gate; 5] = [
        Gate::CircuitOpen,
        Gate::RetryBudget,
        Gate::EndpointSlot,
        Gate::RateLimit,
        Gate::BreakerAdmission,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// What stops a delivery that this gate made wait until `until`.
    fn stopped(self, until: DateTime<Utc>) -> Verdict {
        match self {
            Gate::CircuitOpen | Gate::BreakerAdmission => Verdict::Park {
                until,
                reason: DeferralReason::CircuitOpen,
            },
            Gate::RetryBudget => Verdict::Park {
                until,
                reason: DeferralReason::RetryBudget,
            },
            Gate::EndpointSlot => Verdict::Park {
                until,
                reason: DeferralReason::EndpointBusy,
            },
            // The endpoint's own pace is not a failure: the deadline does not cut it short.
            Gate::RateLimit => Verdict::Defer {
                until,
                reason: Some(DeferralReason::RateLimited),
            },
        }
    }
}

/// A gate's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Pass,
    WaitUntil(DateTime<Utc>),
}

/// What is known of the endpoint when the checks start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Deleted or disabled: nothing is sent.
    Unavailable,
    Available {
        rate_limited: bool,
    },
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The event expired: record that, send nothing.
    Expire { expired_at: DateTime<Utc> },
    /// Not attempted now but at `until`, same attempt number; the deadline does not apply.
    /// `reason` is `None` for the event's own schedule (`deliver_after`).
    Defer {
        until: DateTime<Utc>,
        reason: Option<DeferralReason>,
    },
    /// Must wait until `until` without an attempt; the delivery's deadline still runs (see
    /// [`parked`]).
    Park {
        until: DateTime<Utc>,
        reason: DeferralReason,
    },
    /// The endpoint was deleted or disabled: record an attempt that sent nothing.
    EndpointUnavailable,
    /// Ask this gate and give the answer to [`Checks::answer`].
    Ask(Gate),
    /// Every check passed: make the request.
    Send,
}

/// The checks of one delivery's attempt and the answers given so far.
#[derive(Clone, Debug)]
pub struct Checks {
    pub now: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub deliver_after: Option<DateTime<Utc>>,
    pub endpoint: EndpointState,
    pub charged_to_retry_budget: bool,
    answers: [Option<Answer>; Gate::ORDER.len()],
}

impl Checks {
    pub fn new(
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        deliver_after: Option<DateTime<Utc>>,
        endpoint: EndpointState,
        charged_to_retry_budget: bool,
    ) -> Self {
        Self {
            now,
            expires_at,
            deliver_after,
            endpoint,
            charged_to_retry_budget,
            answers: [None; Gate::ORDER.len()],
        }
    }

    pub fn answer(&mut self, gate: Gate, answer: Answer) {
        self.answers[gate.index()] = Some(answer);
    }

    /// Whether `gate` is asked at all for this delivery.
    pub fn applies(&self, gate: Gate) -> bool {
        match (gate, self.endpoint) {
            (_, EndpointState::Unavailable) => false,
            (Gate::RetryBudget, _) => self.charged_to_retry_budget,
            (Gate::RateLimit, EndpointState::Available { rate_limited }) => rate_limited,
            _ => true,
        }
    }

    /// The next thing to do, given the answers so far.
    pub fn next(&self) -> Verdict {
        if let Some(expired_at) = self.expires_at.filter(|at| self.now >= *at) {
            return Verdict::Expire { expired_at };
        }
        if let Some(after) = self
            .deliver_after
            .filter(|at| *at - self.now > SCHEDULE_SLACK)
        {
            return Verdict::Defer {
                until: after,
                reason: None,
            };
        }
        if self.endpoint == EndpointState::Unavailable {
            return Verdict::EndpointUnavailable;
        }
        for gate in Gate::ORDER.into_iter().filter(|gate| self.applies(*gate)) {
            match self.answers[gate.index()] {
                None => return Verdict::Ask(gate),
                Some(Answer::WaitUntil(until)) => return gate.stopped(until),
                Some(Answer::Pass) => {}
            }
        }
        Verdict::Send
    }
}

/// What becomes of a parked delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parked {
    /// Tried again at `due_at` with the same attempt number.
    Until(DateTime<Utc>),
    /// The wait would pass the delivery's deadline: it ends now, unsent.
    DeadLettered {
        class: ErrorClass,
        message: &'static str,
    },
}

/// Where a delivery parked until `until` for `reason` goes, given its `deadline`. Deliveries
/// parked behind an open breaker are spread over `spread` after it reopens (`spread_ms` is
/// a random offset below that, chosen by the caller).
pub fn parked(
    reason: DeferralReason,
    until: DateTime<Utc>,
    deadline: DateTime<Utc>,
    spread_ms: u32,
) -> Parked {
    let due_at = match reason {
        DeferralReason::CircuitOpen => until + chrono::Duration::milliseconds(i64::from(spread_ms)),
        _ => until,
    };
    if due_at <= deadline {
        return Parked::Until(due_at);
    }
    let (class, message) = match reason {
        DeferralReason::CircuitOpen => (
            ErrorClass::CircuitOpen,
            "the deadline passed while the endpoint's circuit breaker was open",
        ),
        DeferralReason::EndpointBusy => (
            ErrorClass::EndpointBusy,
            "the deadline passed while the endpoint had as many requests in flight as it may have",
        ),
        DeferralReason::RetryBudget | DeferralReason::RateLimited => (
            ErrorClass::RetryBudget,
            "the deadline passed while the retry budget was spent",
        ),
    };
    Parked::DeadLettered { class, message }
}

/// How far after an open breaker's reopening its parked deliveries are spread, at least and
/// at most; see [`breaker_spread`].
pub const BREAKER_SPREAD: Duration = Duration::from_millis(500);
pub const MAX_BREAKER_SPREAD: Duration = Duration::from_secs(30);

/// How far after the reopening a delivery parked for `parked_for` is spread: about as long as
/// it is parked, within [`BREAKER_SPREAD`] and [`MAX_BREAKER_SPREAD`]. What an open breaker
/// gathered then comes back at about the pace it came in. Spread over half a second, the
/// backlog of a breaker open for 5 s came back as one wave each time it reopened, and the
/// burst of retries and deferrals slowed everyone else's deliveries (docs/PERFORMANCE.md,
/// `failing`); a recovered endpoint also gets its backlog at a pace it can take.
pub fn breaker_spread(parked_for: Duration) -> Duration {
    parked_for.clamp(BREAKER_SPREAD, MAX_BREAKER_SPREAD)
}

#[cfg(test)]
mod tests;
