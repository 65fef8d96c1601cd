-- The stable interface for dashboards (docs/clickhouse.md lists every column): finalized SLIs
-- read from the rollups of 0003. Views hold no data; a later migration may replace one
-- (DROP VIEW + CREATE VIEW) but keeps its name and columns, adding columns only at the end.
--
-- Counts are attempts. `requests`: attempts that made (or tried to make) a request, the ones
-- latency quantiles are over. `deliveries_concluded`: attempts that ended their delivery
-- (succeeded, failed, dead-lettered, expired); the delivery rates are over those. Quantiles
-- (t-digest, milliseconds) are NULL when there is nothing to take them over.
--
-- On ClickHouse 18.16 a filter on a view reaches the rollup's index only with the setting
-- enable_optimize_predicate_expression = 1 (the default in current ClickHouse); without it
-- the view aggregates the whole rollup first. Same results either way.

-- One row per minute, tenant, endpoint and event type.
CREATE VIEW IF NOT EXISTS {database}.sli_minute AS
SELECT
    period_start,
    tenant_id,
    endpoint_id,
    event_type,
    countMerge(attempts_state) AS attempts,
    countMergeIf(attempts_state, outcome = 'succeeded') AS successes,
    attempts - successes AS failures,
    countMergeIf(attempts_state, outcome = 'retry_scheduled') AS retries_scheduled,
    countMergeIf(attempts_state, outcome = 'failed') AS permanent_failures,
    countMergeIf(attempts_state, outcome = 'dead_lettered') AS dead_letters,
    countMergeIf(attempts_state, outcome = 'expired') AS expirations,
    successes + permanent_failures + dead_letters + expirations AS deliveries_concluded,
    countMergeIf(attempts_state, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS requests,
    successes / attempts AS success_rate,
    if(deliveries_concluded = 0, NULL, successes / deliveries_concluded) AS delivery_success_rate,
    if(deliveries_concluded = 0, NULL, dead_letters / deliveries_concluded) AS dead_letter_rate,
    countMergeIf(attempts_state, error_class = 'http_3xx') AS errors_http_3xx,
    countMergeIf(attempts_state, error_class = 'http_429') AS errors_http_429,
    countMergeIf(attempts_state, error_class = 'http_4xx') AS errors_http_4xx,
    countMergeIf(attempts_state, error_class = 'http_5xx') AS errors_http_5xx,
    countMergeIf(attempts_state, error_class = 'http_invalid') AS errors_http_invalid,
    countMergeIf(attempts_state, error_class = 'connection') AS errors_connection,
    countMergeIf(attempts_state, error_class = 'dns') AS errors_dns,
    countMergeIf(attempts_state, error_class = 'timeout') AS errors_timeout,
    countMergeIf(attempts_state, error_class = 'target_refused') AS errors_target_refused,
    countMergeIf(attempts_state, error_class = 'endpoint_unavailable') AS errors_endpoint_unavailable,
    countMergeIf(attempts_state, error_class = 'circuit_open') AS errors_circuit_open,
    countMergeIf(attempts_state, error_class = 'retry_budget') AS errors_retry_budget,
    countMergeIf(attempts_state, error_class = 'endpoint_busy') AS errors_endpoint_busy,
    countMergeIf(attempts_state, error_class = 'expired') AS errors_expired,
    countMergeIf(attempts_state, error_class NOT IN ('', 'http_3xx', 'http_429', 'http_4xx', 'http_5xx', 'http_invalid', 'connection', 'dns', 'timeout', 'target_refused', 'endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS errors_other,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[1]), 1)) AS attempt_latency_p50_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[2]), 1)) AS attempt_latency_p90_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[3]), 1)) AS attempt_latency_p95_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[4]), 1)) AS attempt_latency_p99_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[1]), 1)) AS end_to_end_p50_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[2]), 1)) AS end_to_end_p90_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[3]), 1)) AS end_to_end_p95_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[4]), 1)) AS end_to_end_p99_ms
FROM {database}.sli_minute_rollup
GROUP BY period_start, tenant_id, endpoint_id, event_type;

-- One row per hour, tenant, endpoint and event type.
CREATE VIEW IF NOT EXISTS {database}.sli_hour AS
SELECT
    period_start,
    tenant_id,
    endpoint_id,
    event_type,
    countMerge(attempts_state) AS attempts,
    countMergeIf(attempts_state, outcome = 'succeeded') AS successes,
    attempts - successes AS failures,
    countMergeIf(attempts_state, outcome = 'retry_scheduled') AS retries_scheduled,
    countMergeIf(attempts_state, outcome = 'failed') AS permanent_failures,
    countMergeIf(attempts_state, outcome = 'dead_lettered') AS dead_letters,
    countMergeIf(attempts_state, outcome = 'expired') AS expirations,
    successes + permanent_failures + dead_letters + expirations AS deliveries_concluded,
    countMergeIf(attempts_state, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS requests,
    successes / attempts AS success_rate,
    if(deliveries_concluded = 0, NULL, successes / deliveries_concluded) AS delivery_success_rate,
    if(deliveries_concluded = 0, NULL, dead_letters / deliveries_concluded) AS dead_letter_rate,
    countMergeIf(attempts_state, error_class = 'http_3xx') AS errors_http_3xx,
    countMergeIf(attempts_state, error_class = 'http_429') AS errors_http_429,
    countMergeIf(attempts_state, error_class = 'http_4xx') AS errors_http_4xx,
    countMergeIf(attempts_state, error_class = 'http_5xx') AS errors_http_5xx,
    countMergeIf(attempts_state, error_class = 'http_invalid') AS errors_http_invalid,
    countMergeIf(attempts_state, error_class = 'connection') AS errors_connection,
    countMergeIf(attempts_state, error_class = 'dns') AS errors_dns,
    countMergeIf(attempts_state, error_class = 'timeout') AS errors_timeout,
    countMergeIf(attempts_state, error_class = 'target_refused') AS errors_target_refused,
    countMergeIf(attempts_state, error_class = 'endpoint_unavailable') AS errors_endpoint_unavailable,
    countMergeIf(attempts_state, error_class = 'circuit_open') AS errors_circuit_open,
    countMergeIf(attempts_state, error_class = 'retry_budget') AS errors_retry_budget,
    countMergeIf(attempts_state, error_class = 'endpoint_busy') AS errors_endpoint_busy,
    countMergeIf(attempts_state, error_class = 'expired') AS errors_expired,
    countMergeIf(attempts_state, error_class NOT IN ('', 'http_3xx', 'http_429', 'http_4xx', 'http_5xx', 'http_invalid', 'connection', 'dns', 'timeout', 'target_refused', 'endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS errors_other,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[1]), 1)) AS attempt_latency_p50_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[2]), 1)) AS attempt_latency_p90_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[3]), 1)) AS attempt_latency_p95_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[4]), 1)) AS attempt_latency_p99_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[1]), 1)) AS end_to_end_p50_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[2]), 1)) AS end_to_end_p90_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[3]), 1)) AS end_to_end_p95_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[4]), 1)) AS end_to_end_p99_ms
FROM {database}.sli_hour_rollup
GROUP BY period_start, tenant_id, endpoint_id, event_type;

-- One row per minute and tenant (every endpoint and event type).
CREATE VIEW IF NOT EXISTS {database}.sli_tenant_minute AS
SELECT
    period_start,
    tenant_id,
    countMerge(attempts_state) AS attempts,
    countMergeIf(attempts_state, outcome = 'succeeded') AS successes,
    attempts - successes AS failures,
    countMergeIf(attempts_state, outcome = 'retry_scheduled') AS retries_scheduled,
    countMergeIf(attempts_state, outcome = 'failed') AS permanent_failures,
    countMergeIf(attempts_state, outcome = 'dead_lettered') AS dead_letters,
    countMergeIf(attempts_state, outcome = 'expired') AS expirations,
    successes + permanent_failures + dead_letters + expirations AS deliveries_concluded,
    countMergeIf(attempts_state, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS requests,
    successes / attempts AS success_rate,
    if(deliveries_concluded = 0, NULL, successes / deliveries_concluded) AS delivery_success_rate,
    if(deliveries_concluded = 0, NULL, dead_letters / deliveries_concluded) AS dead_letter_rate,
    countMergeIf(attempts_state, error_class = 'http_3xx') AS errors_http_3xx,
    countMergeIf(attempts_state, error_class = 'http_429') AS errors_http_429,
    countMergeIf(attempts_state, error_class = 'http_4xx') AS errors_http_4xx,
    countMergeIf(attempts_state, error_class = 'http_5xx') AS errors_http_5xx,
    countMergeIf(attempts_state, error_class = 'http_invalid') AS errors_http_invalid,
    countMergeIf(attempts_state, error_class = 'connection') AS errors_connection,
    countMergeIf(attempts_state, error_class = 'dns') AS errors_dns,
    countMergeIf(attempts_state, error_class = 'timeout') AS errors_timeout,
    countMergeIf(attempts_state, error_class = 'target_refused') AS errors_target_refused,
    countMergeIf(attempts_state, error_class = 'endpoint_unavailable') AS errors_endpoint_unavailable,
    countMergeIf(attempts_state, error_class = 'circuit_open') AS errors_circuit_open,
    countMergeIf(attempts_state, error_class = 'retry_budget') AS errors_retry_budget,
    countMergeIf(attempts_state, error_class = 'endpoint_busy') AS errors_endpoint_busy,
    countMergeIf(attempts_state, error_class = 'expired') AS errors_expired,
    countMergeIf(attempts_state, error_class NOT IN ('', 'http_3xx', 'http_429', 'http_4xx', 'http_5xx', 'http_invalid', 'connection', 'dns', 'timeout', 'target_refused', 'endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS errors_other,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[1]), 1)) AS attempt_latency_p50_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[2]), 1)) AS attempt_latency_p90_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[3]), 1)) AS attempt_latency_p95_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[4]), 1)) AS attempt_latency_p99_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[1]), 1)) AS end_to_end_p50_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[2]), 1)) AS end_to_end_p90_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[3]), 1)) AS end_to_end_p95_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[4]), 1)) AS end_to_end_p99_ms
FROM {database}.sli_minute_rollup
GROUP BY period_start, tenant_id;

-- One row per hour and tenant (every endpoint and event type).
CREATE VIEW IF NOT EXISTS {database}.sli_tenant_hour AS
SELECT
    period_start,
    tenant_id,
    countMerge(attempts_state) AS attempts,
    countMergeIf(attempts_state, outcome = 'succeeded') AS successes,
    attempts - successes AS failures,
    countMergeIf(attempts_state, outcome = 'retry_scheduled') AS retries_scheduled,
    countMergeIf(attempts_state, outcome = 'failed') AS permanent_failures,
    countMergeIf(attempts_state, outcome = 'dead_lettered') AS dead_letters,
    countMergeIf(attempts_state, outcome = 'expired') AS expirations,
    successes + permanent_failures + dead_letters + expirations AS deliveries_concluded,
    countMergeIf(attempts_state, error_class NOT IN ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS requests,
    successes / attempts AS success_rate,
    if(deliveries_concluded = 0, NULL, successes / deliveries_concluded) AS delivery_success_rate,
    if(deliveries_concluded = 0, NULL, dead_letters / deliveries_concluded) AS dead_letter_rate,
    countMergeIf(attempts_state, error_class = 'http_3xx') AS errors_http_3xx,
    countMergeIf(attempts_state, error_class = 'http_429') AS errors_http_429,
    countMergeIf(attempts_state, error_class = 'http_4xx') AS errors_http_4xx,
    countMergeIf(attempts_state, error_class = 'http_5xx') AS errors_http_5xx,
    countMergeIf(attempts_state, error_class = 'http_invalid') AS errors_http_invalid,
    countMergeIf(attempts_state, error_class = 'connection') AS errors_connection,
    countMergeIf(attempts_state, error_class = 'dns') AS errors_dns,
    countMergeIf(attempts_state, error_class = 'timeout') AS errors_timeout,
    countMergeIf(attempts_state, error_class = 'target_refused') AS errors_target_refused,
    countMergeIf(attempts_state, error_class = 'endpoint_unavailable') AS errors_endpoint_unavailable,
    countMergeIf(attempts_state, error_class = 'circuit_open') AS errors_circuit_open,
    countMergeIf(attempts_state, error_class = 'retry_budget') AS errors_retry_budget,
    countMergeIf(attempts_state, error_class = 'endpoint_busy') AS errors_endpoint_busy,
    countMergeIf(attempts_state, error_class = 'expired') AS errors_expired,
    countMergeIf(attempts_state, error_class NOT IN ('', 'http_3xx', 'http_429', 'http_4xx', 'http_5xx', 'http_invalid', 'connection', 'dns', 'timeout', 'target_refused', 'endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')) AS errors_other,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[1]), 1)) AS attempt_latency_p50_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[2]), 1)) AS attempt_latency_p90_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[3]), 1)) AS attempt_latency_p95_ms,
    if(requests = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)[4]), 1)) AS attempt_latency_p99_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[1]), 1)) AS end_to_end_p50_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[2]), 1)) AS end_to_end_p90_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[3]), 1)) AS end_to_end_p95_ms,
    if(successes = 0, NULL, round(toFloat64(quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)[4]), 1)) AS end_to_end_p99_ms
FROM {database}.sli_hour_rollup
GROUP BY period_start, tenant_id;

-- Long form, for charts by outcome or error class: one row per minute, tenant, endpoint, event
-- type, outcome and error class ('' for a success).
CREATE VIEW IF NOT EXISTS {database}.sli_outcomes_minute AS
SELECT
    period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countMerge(attempts_state) AS attempts
FROM {database}.sli_minute_rollup
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;

-- The same per hour.
CREATE VIEW IF NOT EXISTS {database}.sli_outcomes_hour AS
SELECT
    period_start,
    tenant_id,
    endpoint_id,
    event_type,
    outcome,
    error_class,
    countMerge(attempts_state) AS attempts
FROM {database}.sli_hour_rollup
GROUP BY period_start, tenant_id, endpoint_id, event_type, outcome, error_class;
