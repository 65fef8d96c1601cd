#!/usr/bin/env bash
# Runs `herald all` in the foreground against the local stack. When HERALD_ADMIN_TOKEN is not
# set, an admin token is generated once into .stack/admin-token and reused afterwards; the
# master key that seals endpoint secrets likewise into .stack/secrets.key.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
eval "$(scripts/stack.sh env)"
if [ -z "${HERALD_ADMIN_TOKEN:-}" ]; then
  token_file=.stack/admin-token
  if [ ! -s "$token_file" ]; then
    (umask 077; echo "adm_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$token_file")
  fi
  HERALD_ADMIN_TOKEN="$(cat "$token_file")"
  export HERALD_ADMIN_TOKEN
  echo "Admin token (from $token_file): $HERALD_ADMIN_TOKEN"
fi
# Endpoint secrets are sealed at rest under a master key; `make run` keeps one in .stack/.
if [ -z "${HERALD_SECRETS_KEY:-}" ] && [ -z "${HERALD_SECRETS_KEY_FILE:-}" ]; then
  HERALD_SECRETS_KEY_FILE="$(scripts/secrets-key.sh)"
  export HERALD_SECRETS_KEY_FILE
  echo "Master key for secrets at rest: $HERALD_SECRETS_KEY_FILE"
fi
# A local demo delivers to local receivers; `make run` allows loopback targets unless told
# otherwise (set HERALD_ALLOWED_TARGET_CIDRS= to refuse them as production does by default).
export HERALD_ALLOWED_TARGET_CIDRS="${HERALD_ALLOWED_TARGET_CIDRS-127.0.0.0/8}"
echo "Receivers allowed despite the SSRF guard: ${HERALD_ALLOWED_TARGET_CIDRS:-none}"
echo "Herald API: http://${HERALD_LISTEN_ADDR:-127.0.0.1:8080}  (OpenAPI: /openapi.json, health: /healthz)"
exec target/release/herald all
