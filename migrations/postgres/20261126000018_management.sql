-- Endpoint management, API keys with scopes, tenant administration and the audit trail.

-- Signing secrets and custom header values are stored sealed (`sealed:v1:<key_id>:…`,
-- AES-256-GCM under a master key); Herald seals values written in the clear by earlier
-- releases when it starts. Custom headers: `[{"name": …, "value": <sealed>}]`.
ALTER TABLE endpoints
    ADD COLUMN custom_headers   jsonb,
    -- 'v1' (HMAC-SHA256, `whsec_` secret) or 'v1a' (ed25519: the secret is the sealed private
    -- key, `public_key` the `whpk_` key receivers verify with).
    ADD COLUMN signature_scheme text NOT NULL DEFAULT 'v1',
    ADD COLUMN public_key       text;

-- Keys predating names and scopes may do everything, as they always could.
ALTER TABLE api_keys
    ADD COLUMN key_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN name     text NOT NULL DEFAULT 'first key',
    ADD COLUMN scopes   text[] NOT NULL DEFAULT '{read,write}';
CREATE UNIQUE INDEX api_keys_by_key_id ON api_keys (key_id);

ALTER TABLE tenants
    ADD COLUMN suspended_at       timestamptz,
    ADD COLUMN ingest_per_second  integer,
    ADD COLUMN ingest_burst       integer,
    ADD COLUMN updated_at         timestamptz;

-- The one token bucket of a tenant's ingest limit, shared by every command process: each
-- takes tokens from it in small batches (see `command/src/ingest_limit.rs`).
CREATE TABLE tenant_ingest_buckets (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL
);

-- Every configuration change, written in the transaction that makes it (next to its outbox
-- row): `GET /v1/audit` reads it. `data` is the change's log message body, which never
-- holds a secret.
CREATE TABLE config_changes (
    change_id    uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    changed_at   timestamptz NOT NULL,
    actor        jsonb NOT NULL,
    message_type text NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX config_changes_by_tenant ON config_changes (tenant_id, changed_at DESC, change_id DESC);

-- Previous signing secrets are erased when their grace period ends (every few seconds).
CREATE INDEX endpoints_previous_secret_expiry ON endpoints (previous_secret_expires_at)
    WHERE previous_secret IS NOT NULL;
