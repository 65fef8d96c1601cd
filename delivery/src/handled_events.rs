//! The events this process took from the first-attempt consumer lately, so that a copy the log
//! hands out again is not delivered again.
//!
//! After a NATS server restarts, its consumer hands out again what it had handed out just
//! before it died: its record of the acknowledgements is behind them. In `kill_under_load`, two
//! 0.4 s outages made 19–33 events reach their endpoint twice, each about half a second after
//! the first request, when the log was back. A copy of an event whose attempts are all
//! recorded is acknowledged without a request; a copy of one still being delivered is left
//! alone (the first copy's acknowledgement or hand-back settles the log's message). Only this
//! process's events, for [`REMEMBERED_FOR`]: a copy handed to another process, or one handed
//! out again after the ack wait, is delivered again as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a delivered event is remembered: the log hands copies out again within seconds of
/// coming back. At 10 000 events/s that is 300 000 entries, about 15 MB.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(30);

/// What a message taken from the log is to this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Not seen lately: deliver it.
    New,
    /// A copy of an event being delivered now: leave it.
    BeingDelivered,
    /// A copy of an event delivered lately: acknowledge it, send nothing.
    Delivered,
}

#[derive(Debug, Default)]
struct Seen {
    /// Stream sequence → delivered (true) or being delivered (false).
    events: HashMap<u64, bool>,
    /// Delivered events in the order they were, to forget them.
    delivered: VecDeque<(Instant, u64)>,
}

#[derive(Debug)]
pub struct HandledEvents {
    window: Duration,
    seen: Mutex<Seen>,
}

impl HandledEvents {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::default(),
        }
    }

    /// Called for every message taken, with its stream sequence.
    pub fn take(&self, sequence: u64, now: Instant) -> Taken {
        let mut seen = self.seen();
        seen.forget_before(now.checked_sub(self.window));
        match seen.events.get(&sequence) {
            Some(true) => Taken::Delivered,
            Some(false) => Taken::BeingDelivered,
            None => {
                seen.events.insert(sequence, false);
                Taken::New
            }
        }
    }

    /// Every attempt of the event is recorded, and its message acknowledged.
    pub fn delivered(&self, sequence: u64, now: Instant) {
        let mut seen = self.seen();
        seen.events.insert(sequence, true);
        seen.delivered.push_back((now, sequence));
    }

    /// The event was handed back to the log: its next copy is delivered.
    pub fn handed_back(&self, sequence: u64) {
        let mut seen = self.seen();
        if seen.events.get(&sequence) == Some(&false) {
            seen.events.remove(&sequence);
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen().events.len()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Seen {
    fn forget_before(&mut self, horizon: Option<Instant>) {
        let Some(horizon) = horizon else { return };
        while let Some(&(at, sequence)) = self.delivered.front() {
            if at >= horizon {
                break;
            }
            self.delivered.pop_front();
            if self.events.get(&sequence) == Some(&true) {
                self.events.remove(&sequence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_copy_is_left_while_delivering_and_acknowledged_once_delivered() {
        let start = Instant::now();
        let handled = HandledEvents::new(Duration::from_secs(30));
        assert_eq!(handled.take(7, start), Taken::New);
        assert_eq!(handled.take(7, start), Taken::BeingDelivered);
        handled.delivered(7, start);
        assert_eq!(
            handled.take(7, start + Duration::from_secs(29)),
            Taken::Delivered
        );
        // Forgotten after the window.
        assert_eq!(handled.take(7, start + Duration::from_secs(31)), Taken::New);
    }

    #[test]
    fn a_handed_back_event_is_delivered_again() {
        let start = Instant::now();
        let handled = HandledEvents::new(Duration::from_secs(30));
        assert_eq!(handled.take(3, start), Taken::New);
        handled.handed_back(3);
        assert_eq!(handled.take(3, start), Taken::New);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Take(u64),
        Deliver(u64),
        HandBack(u64),
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..8).prop_map(Step::Take),
            (0u64..8).prop_map(Step::Deliver),
            (0u64..8).prop_map(Step::HandBack),
            (0u64..20_000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Against a model that remembers every delivery with its time: an event delivered
        /// within the window is never delivered again, one being delivered is never taken
        /// twice, and nothing is remembered past the window.
        #[test]
        fn copies_are_recognised_exactly_within_the_window(steps in proptest::collection::vec(step(), 1..200)) {
            let window = Duration::from_secs(30);
            let start = Instant::now();
            let handled = HandledEvents::new(window);
            let mut now = start;
            // Model: sequence → Some(delivered at) or None while being delivered.
            let mut model: HashMap<u64, Option<Instant>> = HashMap::new();
            for step in steps {
                match step {
                    Step::Wait(ms) => now += Duration::from_millis(ms),
                    Step::Take(sequence) => {
                        let expected = match model.get(&sequence) {
                            Some(Some(at)) if now.duration_since(*at) <= window => Taken::Delivered,
                            Some(None) => Taken::BeingDelivered,
                            _ => Taken::New,
                        };
                        prop_assert_eq!(handled.take(sequence, now), expected);
                        if expected == Taken::New {
                            model.insert(sequence, None);
                        }
                    }
                    // Only what is being delivered is delivered or handed back.
                    Step::Deliver(sequence) => {
                        if model.get(&sequence) == Some(&None) {
                            handled.delivered(sequence, now);
                            model.insert(sequence, Some(now));
                        }
                    }
                    Step::HandBack(sequence) => {
                        if model.get(&sequence) == Some(&None) {
                            handled.handed_back(sequence);
                            model.remove(&sequence);
                        }
                    }
                }
            }
            let live = model
                .values()
                .filter(|at| at.is_none_or(|at| now.duration_since(at) <= window))
                .count();
            prop_assert!(handled.remembered() <= model.len());
            prop_assert!(handled.remembered() >= live);
        }
    }
}
