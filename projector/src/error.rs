//! The projector layer's one error type, and which of its errors are worth retrying.

/// Why a projection could not go on.
///
/// Retryable errors are the stores or the log being unreachable or failing for now: the
/// projection waits and tries again from its checkpoint, so nothing is lost or doubled. The
/// others stop the projector (and with it the process), because going on would skip or
/// repeat messages.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// NATS JetStream did not answer, or answered with an error.
    #[error("log unavailable: {context}: {source}")]
    Log {
        context: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("Postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// Commits this projector saw succeed are gone (the server crashed before they reached
    /// disk, or a replica without them was promoted): the log must be read again from the
    /// checkpoint that survived, or the messages in between would never be applied.
    #[error(
        "the Postgres checkpoint went back from {believed} to {stored}: recent commits were \
         lost; reading the log again from {stored}"
    )]
    CheckpointWentBack { believed: u64, stored: u64 },
    /// The projection claims to be further than the log goes: the log was fed from another
    /// log (the stream was recreated, or two installations share a store). Projecting on
    /// would silently skip messages.
    #[error(
        "{projection} has applied the log through sequence {applied_through} but the log ends \
         at {last_sequence}: the stream was recreated or another installation shares this \
         store; rebuild the read model or use a separate database"
    )]
    AheadOfLog {
        projection: String,
        applied_through: u64,
        last_sequence: u64,
    },
    /// Reconciling was asked to start before the oldest message the log still holds.
    #[error(
        "the log holds messages from {log_starts_at} on (older ones passed its retention); \
         reconcile since a later time than {since}"
    )]
    LogTrimmed {
        since: chrono::DateTime<chrono::Utc>,
        log_starts_at: chrono::DateTime<chrono::Utc>,
    },
    /// The projections did not catch up with the log in the time reconciling waits.
    #[error(
        "the projections are behind the log: Postgres has applied it through sequence \
         {postgres} and ClickHouse through {clickhouse}, but the log goes to {through} (last \
         attempt record {last_attempt}); try again when they have caught up"
    )]
    Behind {
        postgres: u64,
        clickhouse: u64,
        through: u64,
        last_attempt: u64,
    },
    /// A ClickHouse rebuild from a sequence after the log's first keeps what the live view
    /// counted before it; a rollup bucket older than the raw attempts kept (retention) that
    /// also counts attempts from that sequence on cannot be split, and would count them twice.
    #[error(
        "ClickHouse `{table}` counts attempts up to log sequence {counted_through} in periods \
         before {raw_rows_from}, older than the raw attempts kept (HERALD_RETENTION_DAYS), so \
         it cannot be rebuilt from sequence {from}; rebuild from a later sequence or time"
    )]
    CannotKeepHistory {
        table: &'static str,
        raw_rows_from: chrono::DateTime<chrono::Utc>,
        counted_through: u64,
        from: u64,
    },
    /// A projection's task panicked or was aborted.
    #[error("projection task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ProjectorError {
    pub(crate) fn log(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Log {
            context,
            source: Box::new(source),
        }
    }

    /// Whether waiting and trying again (from the checkpoint) may succeed. Every database
    /// error counts: a statement that fails now (a lost connection, a missing partition, a
    /// migration not yet run) may pass later, and the batch must not be skipped.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Log { .. }
            | Self::Database(_)
            | Self::ClickHouse(_)
            | Self::CheckpointWentBack { .. } => true,
            Self::Behind { .. } => true,
            Self::AheadOfLog { .. }
            | Self::LogTrimmed { .. }
            | Self::CannotKeepHistory { .. }
            | Self::Task(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_ahead_of_its_log_is_fatal_and_says_why() {
        let error = ProjectorError::AheadOfLog {
            projection: "the ClickHouse projection".to_owned(),
            applied_through: 12,
            last_sequence: 3,
        };
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "the ClickHouse projection has applied the log through sequence 12 but the log ends \
             at 3: the stream was recreated or another installation shares this store; rebuild \
             the read model or use a separate database"
        );
    }

    #[test]
    fn unreachable_stores_are_retried() {
        let error = ProjectorError::Database(sqlx::Error::PoolTimedOut);
        assert!(error.is_retryable());
        let error = ProjectorError::log("cannot read stream info", std::io::Error::other("down"));
        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "log unavailable: cannot read stream info: down"
        );
    }
}
