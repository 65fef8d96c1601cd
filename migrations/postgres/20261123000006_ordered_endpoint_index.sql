-- Every delivery process looks for ordered endpoints once a second; with many endpoints that
-- must not be a scan of the whole table.
CREATE INDEX endpoints_ordered ON endpoints (endpoint_id) WHERE ordered;
