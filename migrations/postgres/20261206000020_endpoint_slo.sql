-- Per-endpoint delivery objectives and their error budgets (issue 12, ADR 0022).

-- `{"success_rate": 0.99, "window_days": 30}`; NULL: no objective.
ALTER TABLE endpoints ADD COLUMN slo jsonb;

-- What the query service's objective watcher last found for each endpoint with an objective:
-- the share of the error budget left over the objective's window, the burn rate over each
-- alert window, and the alert firing now (`fast`, `slow` or NULL). Rewritten every round;
-- an alert that starts (or turns from slow to fast) is appended to the log in the same
-- transaction, through the outbox, as `endpoint.slo_burning.v1`.
CREATE TABLE endpoint_slo_status (
    endpoint_id       uuid PRIMARY KEY REFERENCES endpoints (endpoint_id) ON DELETE CASCADE,
    tenant_id         uuid NOT NULL,
    evaluated_at      timestamptz NOT NULL,
    -- attempts counted over the objective's window
    attempts          bigint NOT NULL,
    failures          bigint NOT NULL,
    budget_remaining  double precision NOT NULL,
    burn_rate_5m      double precision NOT NULL,
    burn_rate_30m     double precision NOT NULL,
    burn_rate_1h      double precision NOT NULL,
    burn_rate_6h      double precision NOT NULL,
    alert             text,
    alert_since       timestamptz
);
