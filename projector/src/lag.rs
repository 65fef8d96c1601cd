//! How far each projection is behind the log, sampled for `herald_projection_lag_messages`
//! and `herald_projection_lag_seconds` (labelled `projection="postgres"|"clickhouse"`).
//!
//! Both measure from the first log message a projection still has to apply, so both are 0
//! when it has applied everything it reads, idle or not:
//! - messages: from that message to the log's last sequence. The Postgres projection reads
//!   every message, so this is the log's last sequence minus its checkpoint; the ClickHouse
//!   projection reads only attempt records, and the messages it skips do not hold it back.
//! - seconds: how long that message has been in the log (now minus the time the log appended
//!   it): the age of the oldest thing the read model is missing. Measured from the oldest
//!   message not applied rather than the newest applied, because a stuck projection must show
//!   a growing lag even when the log was quiet before the message it is stuck on.
//!
//! The projections publish how far they got (`AppliedPosition`); sampling costs one stream-info
//! request per interval, and one message lookup for each projection that is behind. A
//! projection behind and not moving gets a new log reader (`reader_watch`).

use crate::error::ProjectorError;
use crate::reader_watch::{ReaderWatch, Reopen, StallDetector};
use async_nats::jetstream;
use async_nats::jetstream::stream::RawMessageErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Often enough for alerts and dashboards (Prometheus scrapes every 15 s or so).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The last log sequence a projection has applied, as its loop last committed it; shared with
/// the sampler. Unknown until the projection has read its checkpoint.
#[derive(Clone, Debug, Default)]
pub struct AppliedPosition(Arc<AtomicU64>);

impl AppliedPosition {
    pub fn set(&self, applied_through: u64) {
        // Stored plus one, so that 0 can mean "not known yet".
        self.0
            .store(applied_through.saturating_add(1), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// One projection as the sampler sees it.
pub struct Projection {
    /// The `projection` label: `postgres` or `clickhouse`.
    pub label: &'static str,
    /// The subjects it reads (`>` for all of them).
    pub filter_subject: String,
    pub applied: AppliedPosition,
    /// Told when the projection is behind and has not moved for a while: its reader is stuck.
    pub reader: ReaderWatch,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lag {
    pub messages: u64,
    pub behind: Duration,
}

impl Lag {
    pub const NONE: Self = Self {
        messages: 0,
        behind: Duration::ZERO,
    };

    /// The lag when `first_unapplied` (sequence, appended at) is the first message the
    /// projection still has to apply, or when there is none.
    pub fn from_first_unapplied(
        last_sequence: u64,
        first_unapplied: Option<(u64, OffsetDateTime)>,
        now: OffsetDateTime,
    ) -> Self {
        match first_unapplied {
            Some((sequence, appended_at)) if sequence <= last_sequence => Self {
                messages: last_sequence - sequence + 1,
                // A server clock ahead of ours reads as no lag, not as a negative one.
                behind: (now - appended_at).try_into().unwrap_or(Duration::ZERO),
            },
            _ => Self::NONE,
        }
    }
}

/// Samples every projection's lag every `SAMPLE_EVERY` until `shutdown`.
pub async fn sample(
    mut log_stream: jetstream::stream::Stream,
    projections: Vec<Projection>,
    shutdown: CancellationToken,
) {
    let mut detectors: Vec<StallDetector> = projections
        .iter()
        .map(|_| StallDetector::default())
        .collect();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let last_sequence = match log_stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(error) => {
                // The gauges keep their last values; the projections report a log that is down.
                tracing::debug!(%error, "could not sample the log's end");
                continue;
            }
        };
        for (projection, detector) in projections.iter().zip(&mut detectors) {
            let Some(applied) = projection.applied.get() else {
                continue;
            };
            match lag(&log_stream, projection, applied, last_sequence).await {
                Ok(lag) => {
                    herald_metrics::metrics().projection_lag(
                        projection.label,
                        lag.messages,
                        lag.behind,
                    );
                    if detector.stalled(applied, lag.messages, std::time::Instant::now()) {
                        tracing::debug!(
                            projection = projection.label,
                            applied,
                            "projection stalled"
                        );
                        projection.reader.reopen(Reopen::Stalled);
                    }
                }
                Err(error) => {
                    tracing::debug!(projection = projection.label, %error, "could not sample the lag");
                }
            }
        }
    }
}

async fn lag(
    log_stream: &jetstream::stream::Stream,
    projection: &Projection,
    applied: u64,
    last_sequence: u64,
) -> Result<Lag, ProjectorError> {
    if applied >= last_sequence {
        return Ok(Lag::NONE);
    }
    let first_unapplied = match log_stream
        .get_first_raw_message_by_subject(&projection.filter_subject, applied + 1)
        .await
    {
        Ok(message) => Some((message.sequence, message.time)),
        Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => None,
        Err(error) => return Err(ProjectorError::log("cannot read the log", error)),
    };
    Ok(Lag::from_first_unapplied(
        last_sequence,
        first_unapplied,
        OffsetDateTime::now_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_left_to_apply_is_no_lag() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(Lag::from_first_unapplied(40, None, now), Lag::NONE);
    }

    #[test]
    fn lag_counts_from_the_first_message_still_to_apply() {
        let now = OffsetDateTime::now_utc();
        let appended_at = now - time::Duration::seconds(3);
        assert_eq!(
            Lag::from_first_unapplied(40, Some((31, appended_at)), now),
            Lag {
                messages: 10,
                behind: Duration::from_secs(3),
            }
        );
        assert_eq!(
            Lag::from_first_unapplied(40, Some((40, appended_at)), now).messages,
            1
        );
    }

    #[test]
    fn a_server_clock_ahead_of_ours_is_no_lag_in_time() {
        let now = OffsetDateTime::now_utc();
        let lag = Lag::from_first_unapplied(5, Some((5, now + time::Duration::seconds(2))), now);
        assert_eq!(lag.behind, Duration::ZERO);
    }

    #[test]
    fn the_position_is_unknown_until_set() {
        let position = AppliedPosition::default();
        assert_eq!(position.get(), None);
        position.set(0);
        assert_eq!(position.get(), Some(0));
        position.set(17);
        assert_eq!(position.clone().get(), Some(17));
    }
}
