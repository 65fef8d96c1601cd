#!/usr/bin/env bash
# Reproducible benchmark: release build, the local stack, `herald all` with loopback targets
# allowed, then herald-bench against it. Extra arguments go to herald-bench
# (e.g. `--rate 4000 --events 60000`). Herald is stopped afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/stack.sh up
cargo build --release -p herald -p herald-bench
eval "$(scripts/stack.sh env)"
export HERALD_ADMIN_TOKEN="adm_bench_$$"
export HERALD_ALLOWED_TARGET_CIDRS=127.0.0.0/8
export HERALD_LISTEN_ADDR=127.0.0.1:18080
export HERALD_NAMESPACE="bench_$$"
export HERALD_CLICKHOUSE_DATABASE="herald_bench_$$"
export RUST_LOG=warn
target/release/herald all &
herald_pid=$!
trap 'kill $herald_pid 2>/dev/null; wait $herald_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf http://127.0.0.1:18080/healthz >/dev/null && break
  sleep 0.1
done
target/release/herald-bench --herald http://127.0.0.1:18080 "$@"
