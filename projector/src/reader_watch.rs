//! Noticing a projection whose log reader has stopped handing it messages while the log has
//! more for it, or may have (the connection to the log just came back), and making it read
//! again from its checkpoint.
//!
//! A projection reads through the client's ordered consumer, which recreates itself when its
//! server goes away — with backoffs of up to 10 s between tries, each try waiting out request
//! timeouts while the log has no leader. After a server loss or a restart of the only server
//! that was 16 to 61 s without projecting, long after delivery had resumed. The lag sampler
//! sees it (the log is ahead, the projection does not move) and asks for a new reader; the
//! projection's own retry of a fresh reader takes a second.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a projection may be behind the log without applying anything before its reader
/// is taken for stuck. A healthy reader hands out the next message within milliseconds; a
/// projection busy applying a batch (or waiting for its store) is not waiting for its reader,
/// and is not disturbed.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// Why a projection is asked to read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopen {
    /// Its reader handed out nothing for [`STALLED_AFTER`] while the log was ahead.
    Stalled,
    /// The connection to the log came back: the server may have lost the reader.
    Reconnected,
}

impl Reopen {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stalled => "the log reader handed out nothing while the log was ahead",
            Self::Reconnected => "the connection to the log came back",
        }
    }
}

/// Shared by a projection and those who watch its reader (the lag sampler, the connection
/// watch): they ask, the projection's wait for its next message hears it.
#[derive(Clone, Debug, Default)]
pub struct ReaderWatch(Arc<Asked>);

#[derive(Debug)]
struct Asked {
    heard: Notify,
    /// The reason of the last request; read by whoever hears it.
    why: Mutex<Reopen>,
}

impl Default for Asked {
    fn default() -> Self {
        Self {
            heard: Notify::new(),
            why: Mutex::new(Reopen::Stalled),
        }
    }
}

impl ReaderWatch {
    /// Asks the projection to open a new reader, if it is waiting for its reader now.
    pub fn reopen(&self, why: Reopen) {
        *self.0.why.lock().unwrap_or_else(PoisonError::into_inner) = why;
        self.0.heard.notify_waiters();
    }

    /// Resolves, with the reason, when [`reopen`](Self::reopen) is asked while this is
    /// awaited.
    pub async fn reopen_asked(&self) -> Reopen {
        self.0.heard.notified().await;
        *self.0.why.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How often [`reopen_on_reconnection`] looks at the connection to the log.
pub const CONNECTION_LOOKED_AT_EVERY: Duration = Duration::from_millis(200);

/// Tells, from successive looks at the connection to the log, when it has come back after
/// being down. The projector starts connected.
#[derive(Debug)]
pub struct Reconnection {
    was_connected: bool,
}

impl Default for Reconnection {
    fn default() -> Self {
        Self {
            was_connected: true,
        }
    }
}

impl Reconnection {
    /// Told whether the connection is up now; true when it was down at the last look.
    pub fn came_back(&mut self, connected: bool) -> bool {
        let came_back = connected && !self.was_connected;
        self.was_connected = connected;
        came_back
    }
}

/// Asks every reader to read again from its checkpoint as soon as the connection to the log
/// is back. A projection's reader is an ordered consumer the server keeps in memory only: a
/// server that restarted has lost it, and the client recreates it only after two missed
/// heartbeats and its own backoff, so the stall detector was what brought the read model back,
/// 7–9 s after the log. A reader asked while it was not stuck costs one consumer creation; a
/// projection busy applying a batch does not hear it.
pub async fn reopen_on_reconnection(
    client: async_nats::Client,
    readers: Vec<ReaderWatch>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut reconnection = Reconnection::default();
    let mut looks = tokio::time::interval(CONNECTION_LOOKED_AT_EVERY);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = looks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if reconnection.came_back(connected) {
            tracing::debug!(
                "the connection to the log is back; asking the projections to read again"
            );
            for reader in &readers {
                reader.reopen(Reopen::Reconnected);
            }
        }
    }
}

/// Decides from the sampler's observations when a projection's reader is stuck.
#[derive(Debug, Default)]
pub struct StallDetector {
    /// The applied position seen behind the log, and since when it has not moved.
    behind_at: Option<(u64, Instant)>,
}

impl StallDetector {
    /// Told every sample: how far the projection has applied and how many messages it has
    /// still to apply. True when it has been behind at the same position for
    /// [`STALLED_AFTER`]; then it watches afresh, so it asks again only after as long.
    pub fn stalled(&mut self, applied: u64, behind: u64, now: Instant) -> bool {
        if behind == 0 {
            self.behind_at = None;
            return false;
        }
        match self.behind_at {
            Some((position, since)) if position == applied => {
                let stalled = now.saturating_duration_since(since) >= STALLED_AFTER;
                if stalled {
                    self.behind_at = Some((applied, now));
                }
                stalled
            }
            _ => {
                self.behind_at = Some((applied, now));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_projection_behind_without_moving_is_stalled_after_the_limit() {
        let start = Instant::now();
        let mut detector = StallDetector::default();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert!(!detector.stalled(10, 5, at(0)));
        assert!(!detector.stalled(10, 5, at(2)));
        assert!(!detector.stalled(10, 5, at(4)));
        assert!(detector.stalled(10, 5, at(6)));
        // Asked once, then only after as long again.
        assert!(!detector.stalled(10, 5, at(8)));
        assert!(detector.stalled(10, 5, at(12)));
    }

    #[test]
    fn the_connection_came_back_only_on_the_look_after_it_was_down() {
        let mut reconnection = Reconnection::default();
        let looks = [true, false, false, true, true, false, true, true];
        let came_back: Vec<bool> = looks.iter().map(|&up| reconnection.came_back(up)).collect();
        assert_eq!(
            came_back,
            [false, false, false, true, false, false, true, false]
        );
    }

    #[test]
    fn moving_or_caught_up_is_not_stalled() {
        let start = Instant::now();
        let mut detector = StallDetector::default();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert!(!detector.stalled(10, 5, at(0)));
        assert!(!detector.stalled(11, 5, at(4)));
        assert!(!detector.stalled(11, 0, at(8)));
        assert!(!detector.stalled(11, 3, at(10)));
        assert!(!detector.stalled(11, 3, at(14)));
    }

    proptest! {
        /// Over any run of samples, a stall is reported only after the projection has been
        /// behind at one position for the whole limit, and never twice within it; a
        /// projection behind at one position for twice the limit is reported.
        #[test]
        fn stalls_are_reported_exactly_when_behind_and_still_for_the_limit(
            samples in proptest::collection::vec((0u64..3, 0u64..3, 0u64..4_000), 1..60),
        ) {
            let start = Instant::now();
            let mut detector = StallDetector::default();
            let (mut applied, mut now) = (0u64, start);
            // Since when the projection has been behind at `applied`, and the last report.
            let mut still_since: Option<Instant> = None;
            let mut last_report: Option<Instant> = None;
            for (advance, behind, gap_ms) in samples {
                now += Duration::from_millis(gap_ms);
                applied += advance;
                if behind == 0 || advance > 0 {
                    still_since = None;
                    last_report = None;
                }
                if behind > 0 && still_since.is_none() {
                    still_since = Some(now);
                }
                let reported = detector.stalled(applied, behind, now);
                if reported {
                    let since = still_since.expect("behind");
                    prop_assert!(now - since >= STALLED_AFTER);
                    if let Some(last) = last_report {
                        prop_assert!(now - last >= STALLED_AFTER);
                    }
                    last_report = Some(now);
                } else if let Some(since) = still_since {
                    let since_report = last_report.map_or(now - since, |last| now - last);
                    prop_assert!(
                        now - since < STALLED_AFTER || since_report < STALLED_AFTER,
                        "behind and still for {:?} without a report", now - since
                    );
                }
            }
        }
    }
}
