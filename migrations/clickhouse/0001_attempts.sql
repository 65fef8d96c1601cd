-- Raw attempt log: one row per attempt, partitioned by day (dropped after 30 days by the
-- projector; ClickHouse 18.16 has no table TTL). `log_sequence` lets the projector resume
-- exactly after the last row it wrote.
CREATE TABLE IF NOT EXISTS {database}.attempts
(
    attempt_id         String,
    event_id           String,
    endpoint_id        String,
    tenant_id          String,
    event_type         String,
    trace_id           String,
    attempt_number     UInt32,
    event_accepted_at  DateTime,
    scheduled_at       DateTime,
    started_at         DateTime,
    finished_at        DateTime,
    http_status        UInt16,
    error_class        String,
    outcome            String,
    latency_ms         UInt32,
    end_to_end_ms      UInt32,
    log_sequence       UInt64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (tenant_id, endpoint_id, started_at, attempt_id);
