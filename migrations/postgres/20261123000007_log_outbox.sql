-- Log messages for configuration changes, staged in the transaction that makes the change
-- and removed once they are appended to the log (see log/src/outbox.rs).
CREATE TABLE log_outbox (
    id        bigserial PRIMARY KEY,
    subject   text NOT NULL,
    message   bytea NOT NULL,
    staged_at timestamptz NOT NULL
);
