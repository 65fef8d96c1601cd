-- Delivery looks for deliveries overdue in the read model (due, unfinished, nothing happened):
-- those the log lost track of (ADR 0010).
CREATE INDEX deliveries_unfinished_by_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
-- A pending delivery's first attempt is due when its event was accepted (the projector now
-- writes that; rows from before only have NULL).
UPDATE deliveries AS d SET next_attempt_at = e.accepted_at
    FROM events AS e
    WHERE d.event_id = e.event_id AND d.status = 'pending' AND d.next_attempt_at IS NULL;
