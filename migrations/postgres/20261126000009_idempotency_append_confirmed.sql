-- A claimed key whose event was never confirmed appended (the first request died between the
-- claim and the log's acknowledgement) has no appended_at: a repeat of the request appends the
-- same event again, under the same event id and deduplicated by the log (see ADR 0010).
ALTER TABLE idempotency_keys ADD COLUMN appended_at timestamptz;
-- Keys claimed before this column existed were appended (their requests were answered 202).
UPDATE idempotency_keys SET appended_at = created_at;
