-- Replays from the log (ADR 0014): one row per `replay.started.v1`, brought up to date by the
-- replay's `replay.progressed.v1` and `replay.finished.v1`. Written only by the Postgres
-- projector (`projector/src/replays_projection.rs`); read by the query API.
CREATE TABLE replays (
    replay_id            uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL,
    mode                 text NOT NULL CHECK (mode IN ('as_then', 'as_now')),
    since                timestamptz NOT NULL,
    until                timestamptz NOT NULL,
    endpoint_id          uuid,
    event_types          text[],
    events_per_second    integer NOT NULL,
    status               text NOT NULL CHECK (status IN ('running', 'finished')),
    events_replayed      bigint NOT NULL DEFAULT 0,
    deliveries_scheduled bigint NOT NULL DEFAULT 0,
    -- The log stream sequence of the last event handled (0: none yet).
    through_sequence     bigint NOT NULL DEFAULT 0,
    started_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    finished_at          timestamptz
);
-- `GET /v1/replays`: a tenant's replays, newest first.
CREATE INDEX replays_by_tenant ON replays (tenant_id, started_at DESC, replay_id DESC);
