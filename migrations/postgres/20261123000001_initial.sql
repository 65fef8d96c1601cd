-- Configuration (written by command/) and read models (written by projector/).

CREATE TABLE tenants (
    tenant_id   uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Only a SHA-256 of each key is kept.
CREATE TABLE api_keys (
    key_hash    bytea PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (tenant_id),
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);

CREATE TABLE endpoints (
    endpoint_id  uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (tenant_id),
    url          text NOT NULL,
    description  text,
    -- NULL delivers every event type.
    event_types  text[],
    enabled      boolean NOT NULL,
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX endpoints_by_tenant ON endpoints (tenant_id, endpoint_id);

-- Ingest idempotency; rows older than the retention window are deleted by the projector.
CREATE TABLE idempotency_keys (
    tenant_id        uuid NOT NULL,
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    event_id         uuid NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Read model: one row per accepted event.
CREATE TABLE events (
    event_id         uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    event_type       text NOT NULL,
    payload          json NOT NULL,
    idempotency_key  text,
    trace_id         text NOT NULL,
    accepted_at      timestamptz NOT NULL,
    -- pending | delivering | delivered | failed
    status           text NOT NULL,
    log_sequence     bigint NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, accepted_at DESC);

-- Read model: one row per (event, endpoint).
CREATE TABLE deliveries (
    event_id          uuid NOT NULL,
    endpoint_id       uuid NOT NULL,
    tenant_id         uuid NOT NULL,
    -- pending | retrying | succeeded | failed | dead_lettered
    status            text NOT NULL,
    attempt_count     integer NOT NULL,
    last_attempt_at   timestamptz,
    next_attempt_at   timestamptz,
    last_http_status  integer,
    last_error_code   text,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, status);

-- Read model: every attempt, partitioned by day of started_at.
CREATE TABLE attempts (
    attempt_id       uuid NOT NULL,
    tenant_id        uuid NOT NULL,
    event_id         uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    attempt_number   integer NOT NULL,
    scheduled_at     timestamptz NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    http_status      integer,
    error_code       text,
    error_message    text,
    latency_ms       integer NOT NULL,
    outcome          text NOT NULL,
    next_attempt_at  timestamptz,
    trace_id         text NOT NULL,
    log_sequence     bigint NOT NULL,
    PRIMARY KEY (attempt_id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX attempts_by_tenant ON attempts (tenant_id, started_at DESC, attempt_id DESC);
CREATE INDEX attempts_by_event ON attempts (event_id, started_at DESC, attempt_id DESC);
CREATE INDEX attempts_by_endpoint ON attempts (endpoint_id, started_at DESC, attempt_id DESC);

-- Catches rows outside every daily partition so that an insert never fails for want of one.
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;

-- Creates the daily partitions from `first_day` for `days` days; idempotent.
CREATE FUNCTION herald_ensure_attempt_partitions(first_day date, days integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    day date;
BEGIN
    FOR offset_days IN 0 .. days - 1 LOOP
        day := first_day + offset_days;
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF attempts FOR VALUES FROM (%L) TO (%L)',
            'attempts_' || to_char(day, 'YYYYMMDD'),
            day::timestamp AT TIME ZONE 'UTC',
            (day + 1)::timestamp AT TIME ZONE 'UTC'
        );
    END LOOP;
END
$$;

-- Drops daily partitions that end before `keep_from`; returns how many were dropped.
CREATE FUNCTION herald_drop_attempt_partitions_before(keep_from date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    partition record;
    dropped integer := 0;
BEGIN
    FOR partition IN
        SELECT child.relname AS name
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        WHERE parent.relname = 'attempts' AND child.relname ~ '^attempts_[0-9]{8}$'
          AND to_date(substring(child.relname from 10), 'YYYYMMDD') < keep_from
    LOOP
        EXECUTE format('DROP TABLE %I', partition.name);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

SELECT herald_ensure_attempt_partitions((now() AT TIME ZONE 'UTC')::date - 1, 9);

-- Where each projector is in the log, written in the same transaction as its rows.
CREATE TABLE projector_checkpoints (
    projector        text PRIMARY KEY,
    stream_sequence  bigint NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Log messages a projector could not apply; kept for inspection, never blocking the stream.
CREATE TABLE projector_dead_letters (
    projector        text NOT NULL,
    stream_sequence  bigint NOT NULL,
    subject          text NOT NULL,
    error            text NOT NULL,
    message          bytea NOT NULL,
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (projector, stream_sequence)
);
