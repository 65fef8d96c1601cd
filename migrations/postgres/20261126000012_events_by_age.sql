-- Retention deletes finished events older than HERALD_RETENTION_DAYS (with their payloads and
-- deliveries) every hour; this index finds them without reading the whole table.
CREATE INDEX events_by_age ON events (accepted_at);
