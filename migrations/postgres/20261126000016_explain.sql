-- What `GET /v1/events/{id}/explain` needs beyond the delivery history: the event's own
-- routing and timing requests (so that an endpoint left out can be told apart from one that
-- did not exist yet), and why a delivery's next attempt was put off (rate limit, breaker,
-- retry budget, busy endpoint) until the next attempt is recorded. Rows projected before
-- this migration have NULLs: explain says it cannot tell there.
ALTER TABLE events
    ADD COLUMN target_endpoints uuid[],
    ADD COLUMN deliver_after timestamptz,
    ADD COLUMN expires_at timestamptz;

ALTER TABLE deliveries ADD COLUMN deferral_reason text;
