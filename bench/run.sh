#!/usr/bin/env bash
# Runs benchmark scenarios (bench/src/scenarios.rs) the way `make bench` does: for each, a
# release build of Herald (`herald all`, loopback targets allowed) on the local stack, with
# a Postgres database, a ClickHouse database and a log namespace of its own that are dropped
# afterwards, then herald-bench against it, which writes bench/results/<scenario>.json, then
# the plots beside it (bench/plot.py).
#
#   bench/run.sh [--duration <s>] [scenario ...]     default: every scenario, in order
#
# BENCH_BIN_DIR=<dir> runs the `herald` and `herald-bench` binaries found there instead of
# building this checkout (to compare two builds on the same stack, or to run the debug
# build from `make test`). Extra herald-bench flags can be given in BENCH_FLAGS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ALL=(max fanout10 efficiency saturated overload failing burst soak history replay)
duration=()
scenarios=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) [[ -n "${2:-}" ]] && duration=(--duration "$2"); shift 2 ;;
    *) scenarios+=("$1"); shift ;;
  esac
done
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=("${ALL[@]}")

scripts/stack.sh up
bin="${BENCH_BIN_DIR:-target/release}"
[[ -n "${BENCH_BIN_DIR:-}" ]] || cargo build --release -p herald -p herald-bench --bins
python="$(scripts/python-venv.sh)"
eval "$(scripts/stack.sh env)"
server_url="$HERALD_DATABASE_URL"
export HERALD_ADMIN_TOKEN="adm_bench_$$"
export HERALD_ALLOWED_TARGET_CIDRS=127.0.0.0/8
export HERALD_LISTEN_ADDR=127.0.0.1:18080
export HERALD_SECRETS_KEY_FILE="$(scripts/secrets-key.sh)"
export RUST_LOG=warn
export BENCH_COMMIT="$(git describe --always --dirty 2>/dev/null || echo unknown)"
# Streams that test runs left on the server: the scenarios should meet it fresh.
"$bin/drop_namespace" --test-leftovers || true

herald_pid=""
run_id=""
cleanup() {
  if [[ -n "$herald_pid" ]]; then
    kill "$herald_pid" 2>/dev/null || true
    wait "$herald_pid" 2>/dev/null || true
    herald_pid=""
  fi
  if [[ -n "$run_id" ]]; then
    psql -X -q "$server_url" -c "DROP DATABASE IF EXISTS $run_id" >/dev/null || true
    curl -sf "$HERALD_CLICKHOUSE_URL" --data-binary "DROP DATABASE IF EXISTS $run_id" || true
    # Its log streams go too: streams left behind accumulate on the server.
    "$bin/drop_namespace" || true
    run_id=""
  fi
}
trap cleanup EXIT

for scenario in "${scenarios[@]}"; do
  run_id="bench_${scenario}_$$"
  export HERALD_NAMESPACE="$run_id"
  export HERALD_CLICKHOUSE_DATABASE="$run_id"
  # A database of its own: data left behind by earlier runs measurably slows later ones.
  psql -X -q "$server_url" -c "CREATE DATABASE $run_id"
  export HERALD_DATABASE_URL="${server_url%/*}/$run_id"
  "$bin/herald" all &
  herald_pid=$!
  for _ in $(seq 1 300); do
    curl -sf http://127.0.0.1:18080/healthz >/dev/null && break
    sleep 0.1
  done
  status=0
  "$bin/herald-bench" --scenario "$scenario" "${duration[@]}" --herald http://127.0.0.1:18080 \
    --herald-bin "$bin/herald" ${BENCH_FLAGS:-} || status=$?
  cleanup
  [[ -f "bench/results/$scenario.json" ]] && "$python" bench/plot.py "bench/results/$scenario.json"
  [[ $status -eq 0 ]] || { echo "bench: scenario $scenario failed (exit $status)" >&2; exit "$status"; }
done
