-- Portal sessions: short-lived links that open the dashboard for one tenant without its API
-- key (POST /v1/portal_sessions). Only a SHA-256 hash of the token is kept, as for API keys.
-- Owned by the query service, which creates them; read by every service's authenticator.
CREATE TABLE portal_sessions (
    token_hash      bytea PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    read_only       boolean NOT NULL,
    -- origins allowed to embed the dashboard in a frame (CSP frame-ancestors); empty: none
    frame_ancestors text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);

-- Expired sessions are deleted as new ones are made.
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);
