-- GET /v1/events pages a tenant's events newest first by (accepted_at, event_id): the index
-- carries the tie-breaker so that a page boundary inside one microsecond stays exact and
-- every page is one index range scan.
DROP INDEX IF EXISTS events_by_tenant;
CREATE INDEX events_by_tenant ON events (tenant_id, accepted_at DESC, event_id DESC);
