#!/usr/bin/env bash
# What the dashboard's browser test (tests/browser/dashboard.mjs) needs: Debian's `chromium`
# at /usr/bin/chromium and tests/browser/node_modules installed from its package-lock.json.
#
#   scripts/browser-deps.sh    install what is missing; quiet and quick when up to date
#
# Chromium is installed the way scripts/stack.sh installs the servers (apt-get, no
# recommends, one refresh of the package lists when a download fails), through sudo when
# not run as root. node_modules is (re)installed with `npm ci` when it is missing or older
# than package-lock.json. Nothing outside the repository is touched but that package.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BROWSER_TESTS="$ROOT/tests/browser"
CHROMIUM=/usr/bin/chromium

log() { printf 'browser-deps: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# as_root CMD...: runs CMD as root, through sudo when this script is not root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "not root and no sudo: install the Debian packages yourself: apt-get install $*"
  fi
}

install_debian_packages() {
  log "installing Debian packages: $*"
  local pkg need_update=0
  for pkg in "$@"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
  done
  if [ "$need_update" -eq 1 ]; then as_root apt-get update -q; fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if ! as_root "${install[@]}"; then
    # A stale package list (404 on a superseded version) is the usual cause: refresh once.
    log "apt-get install failed; running apt-get update and retrying"
    as_root apt-get update -q
    as_root "${install[@]}"
  fi
}

missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  install_debian_packages "${missing[@]}"
  [ -x "$CHROMIUM" ] || die "$CHROMIUM not found after installing 'chromium'"
fi

# `npm ci` deletes node_modules and installs exactly the lock file; node_modules' mtime
# records when that last happened.
modules="$BROWSER_TESTS/node_modules"
if [ ! -d "$modules" ] || [ "$BROWSER_TESTS/package-lock.json" -nt "$modules" ]; then
  log "installing tests/browser/node_modules (npm ci)"
  (cd "$BROWSER_TESTS" && npm ci --no-audit --no-fund --loglevel=error) >&2
  touch "$modules"
fi
