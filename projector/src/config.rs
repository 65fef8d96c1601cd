//! Configuration of the projector service (environment variables `HERALD_<FIELD>`).

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ProjectorConfig {
    /// Most log messages applied to Postgres in one transaction (and at most
    /// `batch::MAX_BATCH_BYTES` of them). When every process is short of CPU the projection
    /// keeps up only with batches large enough to carry the log's pace, and only a lagging
    /// projection fills them: at 12 000 deliveries/s with fan-out 10, 1 000 fell behind by a
    /// second every eight (fourth round); at 14 800/s, 4 000 fell behind for good (lag p99
    /// 12 s), where 16 000 held 1.9 s at 13 400/s (docs/PERFORMANCE.md, fifth round).
    pub postgres_batch_messages: usize,
    /// How long the Postgres projector waits to fill a batch once it has a first message.
    /// Each transaction costs Postgres about a millisecond of CPU whatever its size, so below
    /// saturation a short window spends more on commits than on rows (docs/PERFORMANCE.md);
    /// under load batches fill to `postgres_batch_messages` well before it ends.
    pub postgres_batch_window_ms: u64,
    /// Most rows in one ClickHouse insert; ClickHouse wants few large inserts.
    pub clickhouse_batch_rows: usize,
    /// Longest a row waits before its ClickHouse insert is sent.
    pub clickhouse_flush_ms: u64,
    /// Days of attempt history kept in Postgres and in ClickHouse's raw table.
    pub retention_days: u32,
    /// Hours an idempotency key is remembered (at least 24).
    pub idempotency_retention_hours: u32,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            postgres_batch_messages: 16_000,
            postgres_batch_window_ms: 100,
            clickhouse_batch_rows: 50_000,
            clickhouse_flush_ms: 1000,
            retention_days: 30,
            idempotency_retention_hours: 48,
        }
    }
}
