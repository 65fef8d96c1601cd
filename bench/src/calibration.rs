//! Two readings of how fast this machine is when a run starts, so that runs made hours
//! apart on a virtual machine whose speed drifts can be told apart from changes in Herald:
//! one thread's arithmetic, and the round trip of waking another thread and being woken back,
//! which is most of what a delivery costs at light load (`docs/PERFORMANCE.md`).

use serde::Serialize;
use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Calibration {
    /// Steps of a xorshift generator one thread takes per microsecond (best of three).
    pub arithmetic_steps_per_us: f64,
    /// Microseconds for a message to another thread and its answer (median of three).
    pub wakeup_round_trip_us: f64,
}

const STEPS: u64 = 20_000_000;
const ROUND_TRIPS: u32 = 10_000;

/// Takes one to two seconds, most of it the round trips; run it while the machine is idle.
pub fn measure() -> Calibration {
    let arithmetic = (0..3)
        .map(|_| arithmetic_steps_per_us())
        .fold(0.0, f64::max);
    let mut round_trips: Vec<f64> = (0..3).map(|_| wakeup_round_trip_us()).collect();
    round_trips.sort_by(f64::total_cmp);
    Calibration {
        arithmetic_steps_per_us: crate::report::round2(arithmetic),
        wakeup_round_trip_us: crate::report::round2(round_trips[1]),
    }
}

fn arithmetic_steps_per_us() -> f64 {
    let started = Instant::now();
    let mut state = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for _ in 0..STEPS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
    }
    black_box(state);
    STEPS as f64 / started.elapsed().as_secs_f64().max(1e-9) / 1e6
}

fn wakeup_round_trip_us() -> f64 {
    let (to_echo, echo_receives) = mpsc::sync_channel::<u32>(0);
    let (echo_answers, answers) = mpsc::sync_channel::<u32>(0);
    let echo = std::thread::spawn(move || {
        while let Ok(n) = echo_receives.recv() {
            if echo_answers.send(n).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    for n in 0..ROUND_TRIPS {
        if to_echo.send(n).is_err() || answers.recv() != Ok(n) {
            break;
        }
    }
    let elapsed = started.elapsed();
    drop(to_echo);
    let _ = echo.join();
    elapsed.as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_are_plausible() {
        let calibration = measure();
        // Any machine that can run Herald takes more than a step per microsecond and wakes a
        // thread in well under ten milliseconds.
        assert!(calibration.arithmetic_steps_per_us > 1.0, "{calibration:?}");
        assert!(
            calibration.wakeup_round_trip_us > 0.0 && calibration.wakeup_round_trip_us < 10_000.0,
            "{calibration:?}"
        );
    }
}
