-- SHA-256 of the first 64 KiB of each response body (the body itself is never stored).
ALTER TABLE attempts ADD COLUMN response_body_hash text;
