#!/usr/bin/env bash
# Prints the path of the master key file that seals endpoint secrets at rest for the local
# stack (.stack/secrets.key, or under HERALD_STACK_DIR), generating it on first use. Herald
# reads it through HERALD_SECRETS_KEY_FILE; `herald secrets rotate-key` adds new keys to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${HERALD_STACK_DIR:-$ROOT/.stack}"
key_file="$STACK/secrets.key"
if [ ! -s "$key_file" ]; then
  mkdir -p "$STACK"
  (
    umask 077
    {
      echo "# Herald master keys (current first). Keep this file secret and backed up:"
      echo "# without it the endpoint secrets stored in Postgres cannot be read."
      echo "k$(date -u +%Y%m%d)$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n'):$(head -c 32 /dev/urandom | base64 -w0)"
    } >"$key_file"
  )
fi
echo "$key_file"
