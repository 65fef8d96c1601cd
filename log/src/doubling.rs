//! Waits between tries that double from a first wait up to a longest, for as long as a
//! deadline allows: for retries of log writes whose failure is worth waiting out briefly.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Doubling {
    pub first: Duration,
    pub longest: Duration,
}

impl Doubling {
    /// The wait before the next try after one that waited `previous` (zero for the first),
    /// or `None` when a try after it would start past `give_up_after` since the first.
    pub fn next(
        &self,
        previous: Duration,
        spent: Duration,
        give_up_after: Duration,
    ) -> Option<Duration> {
        let wait = match previous.is_zero() {
            true => self.first,
            false => (previous * 2).min(self.longest),
        };
        (spent + wait <= give_up_after).then_some(wait)
    }
}
