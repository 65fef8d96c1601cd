-- Lists of attempts filtered by an unsuccessful outcome (the dashboard's dead letters,
-- `GET /v1/deliveries?outcome=dead_lettered,expired`) read this index instead of scanning the
-- tenant's whole history for the few rows that match, which took over a second on 5 million
-- attempts without one (bench/paging.sh). Successes, most of all attempts, are left out so
-- the index costs nothing on the usual insert.
CREATE INDEX attempts_unsuccessful_by_outcome
    ON attempts (tenant_id, outcome, started_at DESC, attempt_id DESC)
    WHERE outcome <> 'succeeded';
