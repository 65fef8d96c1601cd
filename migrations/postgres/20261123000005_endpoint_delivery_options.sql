-- An endpoint's own retry policy (only the settings that differ from the service default)
-- and whether its deliveries are made one at a time in ingest order.
ALTER TABLE endpoints
    ADD COLUMN retry_policy jsonb,
    ADD COLUMN ordered boolean NOT NULL DEFAULT false;

-- Where each ordered endpoint's delivery lane stands, and which delivery process runs it.
-- The lane reads its tenant's events from the log in order; `delivered_through` is the log
-- sequence of the last event whose delivery to this endpoint reached a final outcome, the
-- head fields describe the delivery in progress (its next attempt and when it is due).
-- A lease (`owner`, `leased_until`) lets exactly one process run a lane; when the process
-- dies, another one takes the lane over after the lease runs out.
CREATE TABLE ordered_lanes (
    endpoint_id         uuid PRIMARY KEY REFERENCES endpoints (endpoint_id) ON DELETE CASCADE,
    delivered_through   bigint NOT NULL DEFAULT 0,
    head_sequence       bigint,
    head_attempt_number integer,
    head_due_at         timestamptz,
    owner               text,
    leased_until        timestamptz
);
