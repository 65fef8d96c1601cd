-- Read model: how each endpoint's receiver is doing, folded by the projector from attempt
-- records (those that made a request) and breaker changes in the log.
CREATE TABLE endpoint_health (
    endpoint_id         uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL,
    last_attempt_at     timestamptz,
    last_success_at     timestamptz,
    last_failure_at     timestamptz,
    -- error class of the latest failed attempt (http_5xx, timeout, …)
    last_failure_class  text,
    -- consecutive successful attempts up to the latest one (0 if it failed)
    success_streak      integer NOT NULL,
    -- consecutive failed attempts up to the latest one (0 if it succeeded)
    failure_streak      integer NOT NULL,
    breaker_open        boolean NOT NULL,
    breaker_open_until  timestamptz,
    log_sequence        bigint NOT NULL
);

-- What the dashboard and the endpoint API show: health with the endpoint's configuration.
-- An open breaker whose time has passed admits one probe: `half_open`.
CREATE VIEW endpoint_health_view AS
SELECT e.endpoint_id, e.tenant_id, e.url, e.enabled, e.disabled_reason,
       h.last_attempt_at, h.last_success_at, h.last_failure_at, h.last_failure_class,
       coalesce(h.success_streak, 0) AS success_streak,
       coalesce(h.failure_streak, 0) AS failure_streak,
       CASE WHEN NOT coalesce(h.breaker_open, false) THEN 'closed'
            WHEN h.breaker_open_until > now() THEN 'open'
            ELSE 'half_open' END AS breaker_state,
       CASE WHEN h.breaker_open THEN h.breaker_open_until END AS breaker_open_until
FROM endpoints e LEFT JOIN endpoint_health h ON h.endpoint_id = e.endpoint_id;

-- Existing installations: last success and failure and the current streaks from the attempt
-- history (the breaker state comes with its next change).
INSERT INTO endpoint_health (endpoint_id, tenant_id, last_attempt_at, last_success_at,
    last_failure_at, last_failure_class, success_streak, failure_streak, breaker_open,
    breaker_open_until, log_sequence)
SELECT a.endpoint_id, min(a.tenant_id::text)::uuid,
       max(a.finished_at),
       max(a.finished_at) FILTER (WHERE a.outcome = 'succeeded'),
       max(a.finished_at) FILTER (WHERE a.outcome <> 'succeeded'),
       (array_agg(a.error_code ORDER BY a.log_sequence DESC)
          FILTER (WHERE a.outcome <> 'succeeded'))[1],
       count(*) FILTER (WHERE a.outcome = 'succeeded' AND a.log_sequence > coalesce(f.last_failure, 0)),
       count(*) FILTER (WHERE a.outcome <> 'succeeded' AND a.log_sequence > coalesce(f.last_success, 0)),
       false, NULL, max(a.log_sequence)
FROM attempts a
JOIN (SELECT endpoint_id,
             max(log_sequence) FILTER (WHERE outcome <> 'succeeded') AS last_failure,
             max(log_sequence) FILTER (WHERE outcome = 'succeeded') AS last_success
      FROM attempts
      WHERE error_code IS NULL OR error_code NOT IN
        ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')
      GROUP BY endpoint_id) f ON f.endpoint_id = a.endpoint_id
WHERE a.error_code IS NULL OR a.error_code NOT IN
  ('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')
GROUP BY a.endpoint_id;
