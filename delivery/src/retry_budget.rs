//! The global retry budget: in a retry storm (a popular receiver down, a bulk replay) retries
//! may use at most so many attempts a minute in a process, so that the platform keeps serving
//! first attempts. Every retry attempt takes a token from a strict bucket (a second's worth
//! of burst) the moment it is made; a retry that finds none is not dropped but waits in the
//! retry queue. So that the waiting retries do not all come back at the same moment, each is
//! given its own slot, evenly spaced at the budget's rate after the ones before it.

use crate::rate_limit::TokenBucket;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Hands out slots `60 s / per_minute` apart (a generic cell rate algorithm), with up to
/// `burst` at the same time.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotSchedule {
    interval: Duration,
    tolerance: Duration,
    /// The slot the next caller would get if no time passed: the "theoretical arrival time".
    next: Instant,
}

impl SlotSchedule {
    pub fn new(per_minute: u32, burst: u32, now: Instant) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            next: now,
        }
    }

    /// Takes a slot: `Ok` when it is now, otherwise the time it starts. Either way the slot
    /// is the caller's and the next caller's comes after it.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let slot_time = self.next.max(now);
        self.next = slot_time + self.interval;
        if slot_time <= now + self.tolerance {
            Ok(())
        } else {
            Err(slot_time - self.tolerance)
        }
    }
}

struct Budget {
    tokens: TokenBucket,
    waiting: SlotSchedule,
}

/// The process's retry budget; `None` inside when unlimited.
pub struct RetryBudget {
    budget: Option<Mutex<Budget>>,
}

impl RetryBudget {
    /// `per_minute == 0` means no budget.
    pub fn new(per_minute: u32) -> Self {
        let now = Instant::now();
        Self {
            budget: (per_minute > 0).then(|| {
                Mutex::new(Budget {
                    tokens: TokenBucket::new(
                        f64::from(per_minute) / 60.0,
                        (per_minute / 60).max(1),
                        now,
                    ),
                    waiting: SlotSchedule::new(per_minute, 1, now),
                })
            }),
        }
    }

    /// `Ok` when a retry may be attempted now, otherwise how long it should wait.
    pub fn take(&self) -> Result<(), Duration> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let now = Instant::now();
        let Ok(mut budget) = budget.lock() else {
            return Ok(());
        };
        let Err(until_token) = budget.tokens.take(now) else {
            return Ok(());
        };
        let earliest = now + until_token;
        let slot = budget.waiting.take(earliest).err().unwrap_or(earliest);
        Err(slot.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_seconds_worth_at_once_then_evenly_spaced_slots() {
        let start = Instant::now();
        let mut schedule = SlotSchedule::new(600, 10, start);
        for _ in 0..10 {
            assert_eq!(schedule.take(start), Ok(()));
        }
        let later: Vec<Instant> = (0..3)
            .map(|_| schedule.take(start).expect_err("over the burst"))
            .collect();
        assert_eq!(
            later,
            vec![
                start + Duration::from_millis(100),
                start + Duration::from_millis(200),
                start + Duration::from_millis(300)
            ]
        );
        // The reserved slots stay taken: a caller arriving at 200 ms gets the slot after them.
        assert_eq!(
            schedule.take(start + Duration::from_millis(200)),
            Err(start + Duration::from_millis(400))
        );
    }

    #[test]
    fn retries_over_budget_wait_for_distinct_slots() {
        let budget = RetryBudget::new(600);
        for _ in 0..10 {
            assert_eq!(budget.take(), Ok(()));
        }
        let waits: Vec<Duration> = (0..5)
            .map(|_| budget.take().expect_err("over budget"))
            .collect();
        for pair in waits.windows(2) {
            assert!(pair[1] >= pair[0] + Duration::from_millis(90), "{waits:?}");
        }
        assert!(RetryBudget::new(0).take().is_ok());
    }

    #[test]
    fn an_idle_schedule_does_not_bank_more_than_a_second() {
        let start = Instant::now();
        let mut schedule = SlotSchedule::new(120, 2, start);
        let idle = start + Duration::from_secs(3600);
        assert_eq!(schedule.take(idle), Ok(()));
        assert_eq!(schedule.take(idle), Ok(()));
        assert!(schedule.take(idle).is_err());
    }

    proptest! {
        /// However requests arrive, the slots granted in any window (now or reserved for
        /// later) never exceed a second's worth plus the rate times the window's length.
        #[test]
        fn slots_respect_the_budget_in_every_window(
            per_minute in 1u32..100_000,
            gaps_ms in proptest::collection::vec(0u64..200, 1..300),
        ) {
            let start = Instant::now();
            let burst = (per_minute / 60).max(1);
            let mut schedule = SlotSchedule::new(per_minute, burst, start);
            let mut now = start;
            let mut slots = Vec::new();
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                let slot = match schedule.take(now) {
                    Ok(()) => now,
                    Err(slot) => {
                        prop_assert!(slot > now);
                        slot
                    }
                };
                slots.push(slot);
            }
            slots.sort();
            let burst = f64::from(burst);
            let rate = f64::from(per_minute) / 60.0;
            for (first, &from) in slots.iter().enumerate() {
                for (last, &to) in slots.iter().enumerate().skip(first) {
                    let granted = (last - first + 1) as f64;
                    let window = (to - from).as_secs_f64();
                    prop_assert!(granted <= burst + rate * window + 1e-3,
                        "{granted} slots in {window} s at {per_minute}/min");
                }
            }
        }
    }
}
