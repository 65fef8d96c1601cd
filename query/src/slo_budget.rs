//! How much of an endpoint's error budget is left and how fast it burns: pure arithmetic
//! over attempt counts, with the multi-window burn-rate alerts of the SRE workbook.
//!
//! The budget is the failures the objective allows (`1 - success_rate` of the attempts). A
//! burn rate is the failure rate over a window divided by that allowance: 1 spends the budget
//! exactly over the objective's window. An alert needs both windows of a pair above the
//! threshold — the long one says it is serious, the short one that it is still going on — and
//! enough attempts in the long one for a rate to mean anything.

use herald_schemas::{EndpointSlo, SloAlert};

/// 2 % of a 30-day budget in an hour.
pub const FAST_BURN: f64 = 14.4;
/// 5 % of a 30-day budget in six hours.
pub const SLOW_BURN: f64 = 6.0;
/// Fewer attempts than this in an alert's long window never fire it.
pub const MIN_ATTEMPTS: u64 = 10;

/// Attempts and failed attempts in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub attempts: u64,
    pub failures: u64,
}

/// An endpoint's counts over the alert windows and over its objective's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub last_5m: WindowCounts,
    pub last_30m: WindowCounts,
    pub last_1h: WindowCounts,
    pub last_6h: WindowCounts,
    pub objective_window: WindowCounts,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    /// 1 with no failure, 0 with the budget spent, negative beyond.
    pub budget_remaining: f64,
    pub burn_rate_5m: f64,
    pub burn_rate_30m: f64,
    pub burn_rate_1h: f64,
    pub burn_rate_6h: f64,
    pub alert: Option<SloAlert>,
}

/// The failure rate over `window` in units of what the objective allows; 0 without attempts.
pub fn burn_rate(window: WindowCounts, objective: &EndpointSlo) -> f64 {
    if window.attempts == 0 {
        return 0.0;
    }
    let allowed = 1.0 - objective.success_rate;
    (window.failures as f64 / window.attempts as f64) / allowed
}

pub fn assess(observed: &Observed, objective: &EndpointSlo) -> Assessment {
    let burn = |window| burn_rate(window, objective);
    let (burn_5m, burn_30m, burn_1h, burn_6h) = (
        burn(observed.last_5m),
        burn(observed.last_30m),
        burn(observed.last_1h),
        burn(observed.last_6h),
    );
    let fires = |long: WindowCounts, long_burn: f64, short_burn: f64, threshold: f64| {
        long.attempts >= MIN_ATTEMPTS && long_burn >= threshold && short_burn >= threshold
    };
    let alert = if fires(observed.last_1h, burn_1h, burn_5m, FAST_BURN) {
        Some(SloAlert::Fast)
    } else if fires(observed.last_6h, burn_6h, burn_30m, SLOW_BURN) {
        Some(SloAlert::Slow)
    } else {
        None
    };
    Assessment {
        budget_remaining: 1.0 - burn(observed.objective_window),
        burn_rate_5m: burn_5m,
        burn_rate_30m: burn_30m,
        burn_rate_1h: burn_1h,
        burn_rate_6h: burn_6h,
        alert,
    }
}

/// Whether going from the alert `before` to `now` is announced: an alert that starts, or a
/// slow one that turns fast. One that goes on, calms down or ends is not.
pub fn announces(before: Option<SloAlert>, now: Option<SloAlert>) -> bool {
    matches!(
        (before, now),
        (None, Some(_)) | (Some(SloAlert::Slow), Some(SloAlert::Fast))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OBJECTIVE: EndpointSlo = EndpointSlo {
        success_rate: 0.99,
        window_days: 30,
    };

    fn counts(attempts: u64, failures: u64) -> WindowCounts {
        WindowCounts { attempts, failures }
    }

    #[test]
    fn everything_failing_against_two_nines_is_a_fast_burn() {
        let all_failing = counts(20, 20);
        let observed = Observed {
            last_5m: all_failing,
            last_30m: all_failing,
            last_1h: all_failing,
            last_6h: all_failing,
            objective_window: counts(1_000, 20),
        };
        let assessed = assess(&observed, &OBJECTIVE);
        assert_eq!(assessed.alert, Some(SloAlert::Fast));
        assert!((assessed.burn_rate_1h - 100.0).abs() < 1e-9);
        assert!(
            (assessed.budget_remaining - -1.0).abs() < 1e-9,
            "{assessed:?}"
        );
    }

    #[test]
    fn a_burn_that_has_stopped_or_has_too_few_attempts_does_not_fire() {
        let stopped = Observed {
            last_5m: counts(10, 0),
            last_1h: counts(100, 100),
            ..Observed::default()
        };
        assert_eq!(assess(&stopped, &OBJECTIVE).alert, None);
        let sparse = Observed {
            last_5m: counts(3, 3),
            last_30m: counts(3, 3),
            last_1h: counts(3, 3),
            last_6h: counts(3, 3),
            objective_window: counts(3, 3),
        };
        assert_eq!(assess(&sparse, &OBJECTIVE).alert, None);
        assert_eq!(
            assess(&Observed::default(), &OBJECTIVE).budget_remaining,
            1.0
        );
    }

    #[test]
    fn only_a_start_or_an_escalation_is_announced() {
        use SloAlert::{Fast, Slow};
        assert!(announces(None, Some(Slow)));
        assert!(announces(None, Some(Fast)));
        assert!(announces(Some(Slow), Some(Fast)));
        assert!(!announces(Some(Fast), Some(Fast)));
        assert!(!announces(Some(Fast), Some(Slow)));
        assert!(!announces(Some(Slow), None));
        assert!(!announces(None, None));
    }

    fn window() -> impl Strategy<Value = WindowCounts> {
        (0u64..10_000).prop_flat_map(|attempts| {
            (0..=attempts).prop_map(move |failures| counts(attempts, failures))
        })
    }

    proptest! {
        /// Burn rates are never negative and grow with failures; a fast alert needs both of
        /// its windows at 14.4 or more, a slow one both of its at 6; the budget left is 1 minus
        /// the objective window's burn.
        #[test]
        fn alerts_follow_their_windows(
            last_5m in window(),
            last_30m in window(),
            last_1h in window(),
            last_6h in window(),
            objective_window in window(),
            success_rate in 0.5f64..0.9999,
        ) {
            let objective = EndpointSlo { success_rate, window_days: 30 };
            let observed = Observed { last_5m, last_30m, last_1h, last_6h, objective_window };
            let assessed = assess(&observed, &objective);
            for rate in [assessed.burn_rate_5m, assessed.burn_rate_30m, assessed.burn_rate_1h, assessed.burn_rate_6h] {
                prop_assert!(rate >= 0.0 && rate.is_finite());
            }
            let more_failures = counts(last_1h.attempts + 1, last_1h.failures + 1);
            prop_assert!(burn_rate(more_failures, &objective) >= burn_rate(last_1h, &objective) - 1e-12);
            let fast = last_1h.attempts >= MIN_ATTEMPTS
                && assessed.burn_rate_1h >= FAST_BURN && assessed.burn_rate_5m >= FAST_BURN;
            let slow = last_6h.attempts >= MIN_ATTEMPTS
                && assessed.burn_rate_6h >= SLOW_BURN && assessed.burn_rate_30m >= SLOW_BURN;
            let expected = if fast { Some(SloAlert::Fast) } else if slow { Some(SloAlert::Slow) } else { None };
            prop_assert_eq!(assessed.alert, expected);
            prop_assert!((assessed.budget_remaining - (1.0 - burn_rate(objective_window, &objective))).abs() < 1e-12);
        }
    }
}
