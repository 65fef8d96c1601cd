-- Optional per-endpoint delivery rate limit: a token bucket of `rate_limit_per_second` tokens
-- a second holding at most `rate_limit_burst`.
ALTER TABLE endpoints
    ADD COLUMN rate_limit_per_second integer,
    ADD COLUMN rate_limit_burst integer;
