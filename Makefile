# Herald — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test bench stack stack-down stack-status lint build

## Start the local stack (NATS, PostgreSQL, ClickHouse under .stack/) and run every service
## in the foreground on http://127.0.0.1:8080.
run: stack
	$(CARGO) build --release -p herald
	scripts/run.sh

## The whole test suite against the real stack (started if it is not up), the dashboard's
## browser test in Debian's Chromium among it (scripts/browser-deps.sh). First every
## ClickHouse migration and example query of docs/clickhouse.md runs on current ClickHouse,
## in-process (chdb-core in .stack/venv); the tests run them on the stack's 18.16. Last, the
## `quick` benchmark scenario on the debug build, so the harness keeps working. Its binaries are
## built with `--workspace --tests` so that they reuse the libraries the tests were built with
## (dev-dependencies change features, and `-p herald -p herald-bench` alone built a second copy
## of every crate above serde_json).
test: stack
	scripts/python-venv.sh >/dev/null
	scripts/browser-deps.sh
	.stack/venv/bin/python scripts/check-clickhouse-sql.py
	$(CARGO) test --workspace --no-fail-fast
	$(CARGO) build --workspace --bins --tests
	BENCH_BIN_DIR=target/debug bench/run.sh quick

## Benchmarks (bench/run.sh, docs/PERFORMANCE.md): SCENARIO=<name> runs one (default: every
## scenario, in order, about 35 minutes), DURATION=<s> overrides its length. Each writes
## bench/results/<scenario>.json and PNG plots beside it.
bench: stack
	bench/run.sh $(if $(DURATION),--duration $(DURATION)) $(SCENARIO)

## fmt and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --release -p herald

stack:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

stack-status:
	scripts/stack.sh status
