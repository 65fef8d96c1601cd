-- Secret rotation keeps the previous secret valid (deliveries carry both signatures) until
-- previous_secret_expires_at; a receiver answering 410 Gone disables its endpoint, and why is kept.
ALTER TABLE endpoints
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN disabled_reason text;
