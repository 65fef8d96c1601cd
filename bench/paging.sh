#!/usr/bin/env bash
# Paging benchmark: `herald api` (release build) on a fresh database of the local stack, whose
# attempts table herald-bench's `paging` seeds with 10 million rows before timing pages of
# `GET /v1/deliveries`. Extra arguments go to `paging` (e.g. `--attempts 1000000`). The
# database is dropped afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/stack.sh up
cargo build --release -p herald -p herald-bench --bin herald --bin paging
eval "$(scripts/stack.sh env)"
export HERALD_ADMIN_TOKEN="adm_paging_$$"
export HERALD_LISTEN_ADDR=127.0.0.1:18081
export HERALD_NAMESPACE="paging_$$"
export HERALD_CLICKHOUSE_DATABASE="herald_paging_$$"
export RUST_LOG=warn
export HERALD_SECRETS_KEY_FILE="$(scripts/secrets-key.sh)"
server_url="$HERALD_DATABASE_URL"
psql -X -q "$server_url" -c "CREATE DATABASE herald_paging_$$"
export HERALD_DATABASE_URL="${server_url%/*}/herald_paging_$$"
cleanup() {
  kill "$herald_pid" 2>/dev/null; wait "$herald_pid" 2>/dev/null || true
  psql -X -q "$server_url" -c "DROP DATABASE IF EXISTS herald_paging_$$" || true
  curl -sf "$HERALD_CLICKHOUSE_URL" --data-binary "DROP DATABASE IF EXISTS herald_paging_$$" || true
}
target/release/herald api &
herald_pid=$!
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -sf "http://$HERALD_LISTEN_ADDR/healthz" >/dev/null && break
  sleep 0.1
done
target/release/paging --herald "http://$HERALD_LISTEN_ADDR" "$@"
