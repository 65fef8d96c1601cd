-- Usage metering (GET /v1/usage, /admin/v1/usage): what each tenant used per hour (UTC), kept
-- for ever (a bill outlives the 30 days of attempt history). The Postgres projector adds each
-- batch's counts in the transaction that inserts its events and attempts, counting only the
-- rows that insert really added: a fact the log holds twice is counted once, a batch applied
-- again counts nothing. `herald rebuild` leaves these tables as they are.

-- Bytes of the request body (when the receiver answered) and of the response body read
-- (at most 64 KiB), from `attempt.recorded.v2`; 0 for older records.
ALTER TABLE attempts
    ADD COLUMN request_bytes   integer NOT NULL DEFAULT 0,
    ADD COLUMN response_bytes  integer NOT NULL DEFAULT 0;

CREATE TABLE tenant_usage_hourly (
    tenant_id        uuid NOT NULL,
    hour             timestamptz NOT NULL,
    -- events accepted in this hour (Herald's own `herald.…` events included)
    events_accepted  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour)
);
-- Operators read every tenant's hours in a range.
CREATE INDEX tenant_usage_hourly_by_hour ON tenant_usage_hourly (hour);

CREATE TABLE endpoint_usage_hourly (
    tenant_id        uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    hour             timestamptz NOT NULL,
    -- attempt records whose attempt started in this hour, as the attempt history lists them
    attempts         bigint NOT NULL DEFAULT 0,
    -- of which attempts after the first (attempt_number > 1)
    retries          bigint NOT NULL DEFAULT 0,
    successes        bigint NOT NULL DEFAULT 0,
    request_bytes    bigint NOT NULL DEFAULT 0,
    response_bytes   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour, endpoint_id)
);
CREATE INDEX endpoint_usage_hourly_by_hour ON endpoint_usage_hourly (hour);
