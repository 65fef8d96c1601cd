#!/usr/bin/env bash
# The Python environment of Herald's checks: a venv in .stack/venv holding exactly the
# packages pinned in scripts/python-requirements.txt (chdb-core, for
# scripts/check-clickhouse-sql.py; schemathesis, openapi-spec-validator and standardwebhooks,
# for herald/tests/openapi_conformance.rs; matplotlib, for bench/plot.py). Prints the venv's python on stdout.
#
#   scripts/python-venv.sh    create or update the venv if needed
#
# Idempotent: when the venv was built from the same requirements file and python, it returns
# at once. Otherwise it builds it afresh (~180 MB downloaded from PyPI; 15-60 s) and records
# what it was built from last, so an interrupted build is built again. Without python3 or
# its venv module, it installs the Debian packages `python3` and `python3-venv` the way
# scripts/stack.sh installs the servers (as root, apt-get, nothing else outside the repo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.stack/venv"
REQUIREMENTS="$ROOT/scripts/python-requirements.txt"
STAMP="$VENV/herald-requirements.sha256"

log() { printf 'python-venv: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

install_debian_packages() {
  [ "$(id -u)" -eq 0 ] || die "python3 and its venv module are missing; install the Debian packages: apt-get install python3 python3-venv"
  log "installing Debian packages: $*"
  local pkg need_update=0
  for pkg in "$@"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
  done
  if [ "$need_update" -eq 1 ]; then apt-get update -q; fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if ! "${install[@]}"; then
    # A stale package list (404 on a superseded version) is the usual cause: refresh once.
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q
    "${install[@]}"
  fi
}

# What the venv must have been built from: the requirements and the python that runs it.
wanted_stamp() {
  { cat "$REQUIREMENTS"; python3 -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ] \
    && "$VENV/bin/python" -c 'import chdb, schemathesis, openapi_spec_validator, standardwebhooks' >/dev/null 2>&1
}

# Debian splits ensurepip (which venv needs) into python3-venv.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  install_debian_packages python3 python3-venv
fi

if up_to_date; then
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$ROOT/.stack"
exec 9>"$ROOT/.stack/venv.lock"
flock -w 600 9 || die "timed out waiting for another scripts/python-venv.sh (lock .stack/venv.lock)"
if up_to_date; then # built meanwhile by the holder of the lock
  echo "$VENV/bin/python"
  exit 0
fi

start=$SECONDS
log "building $VENV from scripts/python-requirements.txt"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --no-deps --requirement "$REQUIREMENTS"
wanted_stamp >"$STAMP"
log "built in $((SECONDS - start)) s ($(du -sh "$VENV" | cut -f1) on disk)"
echo "$VENV/bin/python"
