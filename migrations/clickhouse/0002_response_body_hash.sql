-- SHA-256 of the first 64 KiB of each response body; '' when there was no response.
ALTER TABLE {database}.attempts ADD COLUMN response_body_hash String;
