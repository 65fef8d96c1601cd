#!/usr/bin/env bash
# Reproducible benchmark: release build, the local stack, `herald all` with loopback targets
# allowed, then herald-bench against it. Extra arguments go to herald-bench
# (e.g. `--rate 4000 --events 60000`). Herald is stopped afterwards.
# BENCH_BIN_DIR=<dir> runs the `herald` and `herald-bench` binaries found there instead of
# building this checkout (to compare two builds on the same stack, one right after the other).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/stack.sh up
bin="${BENCH_BIN_DIR:-target/release}"
[[ -n "${BENCH_BIN_DIR:-}" ]] || cargo build --release -p herald -p herald-bench
eval "$(scripts/stack.sh env)"
export HERALD_ADMIN_TOKEN="adm_bench_$$"
export HERALD_ALLOWED_TARGET_CIDRS=127.0.0.0/8
export HERALD_LISTEN_ADDR=127.0.0.1:18080
export HERALD_NAMESPACE="bench_$$"
export HERALD_CLICKHOUSE_DATABASE="herald_bench_$$"
export HERALD_SECRETS_KEY_FILE="$(scripts/secrets-key.sh)"
export RUST_LOG=warn
# A database of its own, dropped afterwards with the ClickHouse one: data left behind by
# earlier runs measurably slows later ones.
server_url="$HERALD_DATABASE_URL"
psql -X -q "$server_url" -c "CREATE DATABASE herald_bench_$$"
export HERALD_DATABASE_URL="${server_url%/*}/herald_bench_$$"
cleanup() {
  kill "$herald_pid" 2>/dev/null; wait "$herald_pid" 2>/dev/null || true
  psql -X -q "$server_url" -c "DROP DATABASE IF EXISTS herald_bench_$$" || true
  curl -sf "$HERALD_CLICKHOUSE_URL" --data-binary "DROP DATABASE IF EXISTS herald_bench_$$" || true
}
"$bin/herald" all &
herald_pid=$!
trap cleanup EXIT
for _ in $(seq 1 300); do
  curl -sf http://127.0.0.1:18080/healthz >/dev/null && break
  sleep 0.1
done
# CPU seconds used so far by each process of the pipeline (utime + stime, children excluded).
cpu_by_process() {
  local hz; hz=$(getconf CLK_TCK)
  for stat in /proc/[0-9]*/stat; do
    awk -v hz="$hz" '{gsub(/[()]/, "", $2); print $2, ($14 + $15) / hz}' "$stat" 2>/dev/null || true
  done | awk '$1 ~ /^(herald|herald-bench|nats-server|postgres|clickhouse-serv)$/ {cpu[$1] += $2}
              END {for (name in cpu) printf "%s %.2f\n", name, cpu[name]}' | sort
}
before=$(cpu_by_process)
started=$(date +%s.%N)
"$bin/herald-bench" --herald http://127.0.0.1:18080 "$@"
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
echo "CPU seconds used during the run (wall ${elapsed}s, 2 cores = $(echo "2 * $elapsed" | bc)s available):"
join <(echo "$before") <(cpu_by_process) | awk '{printf "  %-16s %6.2f\n", $1, $3 - $2}'
