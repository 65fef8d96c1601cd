-- SLI rollups per minute and per hour, fed by materialized views on `attempts` (ADR 0012,
-- docs/clickhouse.md). Every attempt row counts once in each rollup, in the minute and the
-- hour it started in (event time: a late record lands in its own minute).
--
--   attempts ──────────────► sli_minute_rollup_mv ─► sli_minute_rollup ◄─ sli_minute_refill_mv ◄─ sli_minute_refill (Null)
--            └─────────────► sli_hour_rollup_mv   ─► sli_hour_rollup   ◄─ sli_hour_refill_mv   ◄─ sli_hour_refill   (Null)
--
-- The Null `*_refill` tables hold nothing: rows inserted there are aggregated into one rollup
-- alone, by a view whose SELECT is the live view's, word for word, but for the table it reads
-- (scripts/check-clickhouse-sql.py checks that). The backfill below uses them, and so does the
-- projector when an insert reached `attempts` but not a rollup. (A chain attempts → view →
-- Null table → view would need no second copy, but ClickHouse 18.16 does not run the views of
-- a view's target table.)
--
-- Every statement runs on ClickHouse 18.16 and on current ClickHouse
-- (scripts/check-clickhouse-sql.py). No TTL (18.16 has none): the minute rollup is partitioned
-- by day and the projector's maintenance drops days older than HERALD_RETENTION_DAYS; the
-- hour rollup is partitioned by month and kept for ever.

CREATE TABLE IF NOT EXISTS {database}.sli_minute_rollup
(
    period_start               DateTime,
    tenant_id                  String,
    endpoint_id                String,
    event_type                 String,
    outcome                    String,
    error_class                String,
    -- attempts of this key
    attempts_state             AggregateFunction(count),
    -- latency_ms of the attempts that made (or tried to make) a request
    attempt_latency_state      AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.95, 0.99), UInt32, UInt8),
    -- end_to_end_ms (event accepted → this successful attempt finished) of succeeded attempts
    end_to_end_latency_state   AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.95, 0.99), UInt32, UInt8),
    -- the highest log sequence counted here: how the projector finds an insert it missed
    log_sequence_max_state     AggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(period_start)
ORDER BY (tenant_id, period_start, endpoint_id, event_type, outcome, error_class);

CREATE TABLE IF NOT EXISTS {database}.sli_hour_rollup
(
    period_start               DateTime,
    tenant_id                  String,
    endpoint_id                String,
    event_type                 String,
    outcome                    String,
    error_class                String,
    attempts_state             AggregateFunction(count),
    attempt_latency_state      AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.95, 0.99), UInt32, UInt8),
    end_to_end_latency_state   AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.95, 0.99), UInt32, UInt8),
    log_sequence_max_state     AggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(period_start)
ORDER BY (tenant_id, period_start, endpoint_id, event_type, outcome, error_class);

-- The columns of `attempts` a rollup needs. ENGINE = Null: rows inserted here are passed to
-- the views on the table and then dropped.
CREATE TABLE IF NOT EXISTS {database}.sli_minute_refill
(
    started_at     DateTime,
    tenant_id      String,
    endpoint_id    String,
    event_type     String,
    outcome        String,
    error_class    String,
    latency_ms     UInt32,
    end_to_end_ms  UInt32,
    log_sequence   UInt64
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {database}.sli_hour_refill
(
    started_at     DateTime,
    tenant_id      String,
    endpoint_id    String,
    event_type     String,
    outcome        String,
    error_class    String,
    latency_ms     UInt32,
    end_to_end_ms  UInt32,
    log_sequence   UInt64
)
ENGINE = Null;

-- The aggregation. Attempts that made no request (the endpoint was gone or disabled; the
-- deadline passed behind an open breaker, a spent retry budget or a busy endpoint; the event
-- expired) have no latency worth a quantile. Each *_refill_mv repeats its *_rollup_mv but for
-- the table it reads: change both together.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sli_minute_rollup_mv
TO {database}.sli_minute_rollup
AS SELECT
    toStartOfMinute(started_at) AS period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countState() AS attempts_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(latency_ms, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS attempt_latency_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(end_to_end_ms, outcome = 'succeeded') AS end_to_end_latency_state,
    maxState(log_sequence) AS log_sequence_max_state
FROM {database}.attempts
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sli_minute_refill_mv
TO {database}.sli_minute_rollup
AS SELECT
    toStartOfMinute(started_at) AS period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countState() AS attempts_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(latency_ms, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS attempt_latency_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(end_to_end_ms, outcome = 'succeeded') AS end_to_end_latency_state,
    maxState(log_sequence) AS log_sequence_max_state
FROM {database}.sli_minute_refill
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sli_hour_rollup_mv
TO {database}.sli_hour_rollup
AS SELECT
    toStartOfHour(started_at) AS period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countState() AS attempts_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(latency_ms, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS attempt_latency_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(end_to_end_ms, outcome = 'succeeded') AS end_to_end_latency_state,
    maxState(log_sequence) AS log_sequence_max_state
FROM {database}.attempts
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.sli_hour_refill_mv
TO {database}.sli_hour_rollup
AS SELECT
    toStartOfHour(started_at) AS period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countState() AS attempts_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(latency_ms, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS attempt_latency_state,
    quantilesTDigestIfState(0.5, 0.9, 0.95, 0.99)(end_to_end_ms, outcome = 'succeeded') AS end_to_end_latency_state,
    maxState(log_sequence) AS log_sequence_max_state
FROM {database}.sli_hour_refill
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;

-- Backfill: the history already in `attempts` (HERALD_RETENTION_DAYS of it). A migration is
-- recorded only after its last statement, so this file runs again if a run stopped part-way:
-- the rollups are emptied first, so a second run gives the same rollups as a first, never
-- twice the counts. Migrations run one at a time (herald/src/migrate.rs holds a lock) and
-- before the process starts its projector; a projector of another version writing while this
-- runs could be counted twice or missed (see docs/clickhouse.md, "Upgrading").
TRUNCATE TABLE {database}.sli_minute_rollup;

TRUNCATE TABLE {database}.sli_hour_rollup;

INSERT INTO {database}.sli_minute_refill (started_at, tenant_id, endpoint_id, event_type, outcome, error_class, latency_ms, end_to_end_ms, log_sequence)
SELECT started_at, tenant_id, endpoint_id, event_type, outcome, error_class, latency_ms, end_to_end_ms, log_sequence
FROM {database}.attempts;

INSERT INTO {database}.sli_hour_refill (started_at, tenant_id, endpoint_id, event_type, outcome, error_class, latency_ms, end_to_end_ms, log_sequence)
SELECT started_at, tenant_id, endpoint_id, event_type, outcome, error_class, latency_ms, end_to_end_ms, log_sequence
FROM {database}.attempts;
