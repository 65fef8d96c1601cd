#!/usr/bin/env bash
# Herald's local stack: NATS (JetStream), PostgreSQL 15 and ClickHouse, all from Debian
# packages, bound to 127.0.0.1 on non-default ports, every byte of state under .stack/.
#
#   scripts/stack.sh up       install what is missing, start what is not running, wait until ready
#   scripts/stack.sh down     stop the servers cleanly (data is kept)
#   scripts/stack.sh status   print each server up/down (exit 0 if all up, 3 otherwise)
#   HERALD_STACK_DIR=DIR scripts/stack.sh up   the same for a stack kept in DIR (ports from the
#                             variables below)
#   scripts/stack.sh env      print `export HERALD_*=...` lines pointing the app at this stack
#                             (use: eval "$(scripts/stack.sh env)")
#
# `up` is idempotent: on a running stack it returns at once; after a crash, kill -9 or a
# reboot (stale pid files) it restarts the servers on the data they had.
# Nothing outside the repository is touched except installing the Debian packages
# (no systemctl, no edits under /etc). `up` and `down` must run as root: PostgreSQL runs
# as the `postgres` OS user (it refuses to run as root), NATS and ClickHouse as root.
#
# Ports (all on 127.0.0.1), overridable from the environment:
#   HERALD_STACK_NATS_PORT               14222  NATS clients
#   HERALD_STACK_NATS_MONITOR_PORT       18222  NATS monitoring (/healthz)
#   HERALD_STACK_NATS_GOMAXPROCS         1      Go scheduler threads of nats-server
#   HERALD_STACK_POSTGRES_PORT           15432  PostgreSQL
#   HERALD_STACK_CLICKHOUSE_HTTP_PORT    18123  ClickHouse HTTP
#   HERALD_STACK_CLICKHOUSE_TCP_PORT     19000  ClickHouse native (clickhouse-client --port 19000)
#
# Layout:
#   .stack/nats/{data/,nats.log,nats.pid}
#   .stack/postgres/{data/,run/,postgres.log}        (owned by postgres)
#   .stack/clickhouse/{config.xml,users.xml,data/,tmp/,user_files/,format_schemas/,
#                      clickhouse.log,clickhouse.err.log,stdout.log,clickhouse.pid}
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# HERALD_STACK_DIR puts a second, independent stack elsewhere (kill tests start their own on
# ports of their own, so that killing a server never disturbs other tests or `make run`).
STACK="${HERALD_STACK_DIR:-$ROOT/.stack}"

NATS_PORT="${HERALD_STACK_NATS_PORT:-14222}"
NATS_MONITOR_PORT="${HERALD_STACK_NATS_MONITOR_PORT:-18222}"
NATS_GOMAXPROCS="${HERALD_STACK_NATS_GOMAXPROCS:-1}"
PG_PORT="${HERALD_STACK_POSTGRES_PORT:-15432}"
CH_HTTP_PORT="${HERALD_STACK_CLICKHOUSE_HTTP_PORT:-18123}"
CH_TCP_PORT="${HERALD_STACK_CLICKHOUSE_TCP_PORT:-19000}"

PG_BIN=/usr/lib/postgresql/15/bin
READY_SECONDS=60 # per server, for start-up
STOP_SECONDS=30  # per server, for a clean stop before SIGKILL

NATS_DIR="$STACK/nats"
NATS_PID="$NATS_DIR/nats.pid"
NATS_LOG="$NATS_DIR/nats.log"
PG_DIR="$STACK/postgres"
PGDATA="$PG_DIR/data"
PGRUN="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
CH_DIR="$STACK/clickhouse"
CH_PID="$CH_DIR/clickhouse.pid"
CH_LOG="$CH_DIR/clickhouse.log"
CH_ERRLOG="$CH_DIR/clickhouse.err.log"
CH_STDOUT="$CH_DIR/stdout.log"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "'$1' must run as root (PostgreSQL is run as the postgres user via runuser)"; }

# ---------------------------------------------------------------- helpers

# pid_matches PIDFILE NEEDLE: the pid file names a live process whose command line contains
# NEEDLE (a path unique to this stack), so a pid reused after a reboot or kill -9 is not
# mistaken for our server.
pid_matches() {
  local pidfile=$1 needle=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null | tr -dc 0-9)
  [ -n "$pid" ] && proc_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}
pid_of() { head -n 1 "$1" | tr -dc 0-9; }

# proc_alive PID: running, and not a zombie (a killed server can linger as a zombie until
# init reaps it, and kill -0 succeeds on zombies).
proc_alive() {
  local st
  st=$(sed -n 's/^.*) \([A-Za-z]\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# foreign NAME PORT: a server answers on PORT but it is not the one whose state is in
# .stack/ (another checkout's stack, a system service, or an orphan whose .stack/ was
# deleted): refuse to pretend it is ours.
foreign() {
  die "$1: something already answers on 127.0.0.1:$2 but it is not the $1 of $STACK (its pid file is missing or names another process). Stop it, or pick other ports via the HERALD_STACK_*_PORT variables."
}

# show_logs FILE...: the tail of each existing, non-empty FILE on stderr.
show_logs() {
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    log "---- last lines of $f ----"
    tail -n 40 "$f" >&2 || true
  done
}

# wait_ready NAME LOGFILES PID CHECK...: polls CHECK every 0.2 s until it succeeds; fails,
# printing the tails of LOGFILES (':'-separated), after READY_SECONDS, or as soon as
# process PID (if not empty) has died.
wait_ready() {
  local name=$1 logfiles=$2 pid=$3; shift 3
  local deadline=$((SECONDS + READY_SECONDS)) logs
  IFS=: read -r -a logs <<<"$logfiles"
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! proc_alive "$pid"; then
      log "$name exited during start-up"
      show_logs "${logs[@]}"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$name did not become ready within ${READY_SECONDS}s"
      show_logs "${logs[@]}"
      exit 1
    fi
    sleep 0.2
  done
}

# stop_pidfile NAME PIDFILE NEEDLE: SIGTERM, wait up to STOP_SECONDS, then SIGKILL.
stop_pidfile() {
  local name=$1 pidfile=$2 needle=$3 pid deadline
  if pid_matches "$pidfile" "$needle"; then
    pid=$(pid_of "$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_SECONDS))
    while proc_alive "$pid"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "$name did not stop within ${STOP_SECONDS}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
        break
      fi
      sleep 0.2
    done
  fi
  rm -f "$pidfile"
}

# write_if_changed FILE: replaces FILE with stdin only when the content differs (ClickHouse
# watches its config files' mtimes and would reload needlessly otherwise). Returns 0 when
# FILE was (re)written, 1 when it was already up to date.
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$file"
}

# ---------------------------------------------------------------- packages

install_packages() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
  [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/psql" ] || missing+=(postgresql)
  command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local pkg need_update=0
  for pkg in "${missing[@]}"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
  done
  if [ "$need_update" -eq 1 ]; then apt-get update -q; fi
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
  if ! "${install[@]}"; then
    # A stale package list (404 on a superseded version) is the usual cause: refresh once.
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q
    "${install[@]}"
  fi
  [ -x "$PG_BIN/postgres" ] || die "PostgreSQL 15 not found in $PG_BIN after installing 'postgresql'"
}

# ---------------------------------------------------------------- NATS

nats_ready() { curl -sf -m 2 "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null; }

nats_up() {
  mkdir -p "$NATS_DIR/data"
  if nats_ready; then
    pid_matches "$NATS_PID" "$NATS_DIR/data" || foreign NATS "$NATS_MONITOR_PORT"
    return 0
  fi
  if pid_matches "$NATS_PID" "$NATS_DIR/data"; then
    # Ours and alive but not answering yet (still starting).
    wait_ready NATS "$NATS_LOG" "$(pid_of "$NATS_PID")" nats_ready
    return 0
  fi
  rm -f "$NATS_PID"
  log "starting NATS (JetStream) on 127.0.0.1:$NATS_PORT, monitor 127.0.0.1:$NATS_MONITOR_PORT"
  # One Go scheduler thread: on this 2-core machine shared with Herald and the databases, a
  # second one only spins and hands goroutines between threads; below saturation that cost
  # nats-server a third of its CPU per delivery (docs/PERFORMANCE.md), and at the maximum
  # nats-server needs about half a core.
  (cd "$NATS_DIR" && GOMAXPROCS="$NATS_GOMAXPROCS" exec setsid nohup nats-server \
    -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
    -js -sd "$NATS_DIR/data" -P "$NATS_PID" \
    >>"$NATS_LOG" 2>&1 </dev/null 9>&-) &
  wait_ready NATS "$NATS_LOG" "$!" nats_ready
}

nats_down() { stop_pidfile NATS "$NATS_PID" "$NATS_DIR/data"; }

# ---------------------------------------------------------------- PostgreSQL

# Runs a command as the postgres OS user, from a directory it can enter.
as_postgres() { (cd "$PG_DIR" 2>/dev/null || cd /; exec runuser -u postgres -- "$@"); }
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

pg_check_traversable() {
  id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (is the postgresql package installed?)"
  mkdir -p "$STACK"
  if ! as_postgres test -x "$STACK"; then
    local d="$STACK" bad=""
    while [ "$d" != "/" ]; do
      as_postgres test -x "$d" 2>/dev/null || bad="$d"
      d=$(dirname "$d")
    done
    die "the postgres OS user cannot traverse to $STACK (first blocked directory: ${bad:-?}). PostgreSQL keeps its data in $PGDATA and runs as 'postgres', so every parent directory needs o+x, e.g. chmod o+x ${bad:-<dir>}"
  fi
}

PG_CONF_CHANGED=0
pg_write_conf() {
  # Included from postgresql.conf; rewritten on every `up` (a change of port, socket or
  # shared_buffers takes effect on the next start, the rest on reload).
  write_if_changed "$PGDATA/herald-stack.conf" <<CONF && PG_CONF_CHANGED=1
# Written by scripts/stack.sh on every 'up'; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGRUN'
max_connections = 200
shared_buffers = 256MB
# Dev/test box: fsync stays on (no corruption on a crash), but commits do not wait for
# the WAL flush: a crash can lose the last few hundred ms of commits. Fine for local tests.
synchronous_commit = off
# After a crash (kill -9, reboot) sync the data directory with one syncfs() instead of an
# fsync() per file: with many test databases the latter takes tens of seconds.
recovery_init_sync_method = syncfs
log_min_messages = warning
log_timezone = 'UTC'
timezone = 'UTC'
CONF
  chown postgres:postgres "$PGDATA/herald-stack.conf"
  if ! grep -qxF "include 'herald-stack.conf'" "$PGDATA/postgresql.conf"; then
    echo "include 'herald-stack.conf'" >>"$PGDATA/postgresql.conf"
    PG_CONF_CHANGED=1
  fi
  write_if_changed "$PGDATA/pg_hba.conf" <<'CONF' && PG_CONF_CHANGED=1
# Written by scripts/stack.sh. Superuser only over the unix socket as the postgres OS user;
# everything over TCP (127.0.0.1 only) needs a password.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       postgres             peer
host    all       all   127.0.0.1/32   scram-sha-256
CONF
  chown postgres:postgres "$PGDATA/pg_hba.conf"
  chmod 600 "$PGDATA/pg_hba.conf"
}

pg_up() {
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $PGDATA"
    rm -rf "$PGDATA"
    install -d -o postgres -g postgres -m 700 "$PGDATA"
    as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=reject --no-instructions >"$PG_DIR/initdb.log" 2>&1 \
      || { tail -n 40 "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  fi
  install -d -o postgres -g postgres -m 755 "$PGRUN"
  [ -e "$PG_LOG" ] || install -o postgres -g postgres -m 640 /dev/null "$PG_LOG"
  pg_write_conf
  if pg_ready && ! pid_matches "$PGDATA/postmaster.pid" "$PGDATA"; then
    foreign PostgreSQL "$PG_PORT"
  fi
  if ! pg_ready; then
    if pid_matches "$PGDATA/postmaster.pid" "$PGDATA"; then
      # Our postmaster is alive (starting up or recovering): just wait for it.
      wait_ready PostgreSQL "$PG_LOG" "$(pid_of "$PGDATA/postmaster.pid")" pg_ready
    else
      # No live postmaster of ours. PostgreSQL ignores lock files naming a dead pid, but
      # refuses to start when that pid now belongs to another process (pid reuse after a
      # reboot) or to a zombie (a killed postmaster not reaped yet): remove them.
      if [ -f "$PGDATA/postmaster.pid" ]; then
        log "removing stale $PGDATA/postmaster.pid"
        rm -f "$PGDATA/postmaster.pid"
      fi
      rm -f "$PGRUN/.s.PGSQL.$PG_PORT.lock" "$PGRUN/.s.PGSQL.$PG_PORT"
      log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
      if ! as_postgres setsid "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" \
              -w -t "$READY_SECONDS" start >/dev/null 9>&-; then
        log "PostgreSQL failed to start"
        show_logs "$PG_LOG"
        exit 1
      fi
      wait_ready PostgreSQL "$PG_LOG" "" pg_ready
    fi
  elif [ "$PG_CONF_CHANGED" -eq 1 ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null
  fi
  # The application's role and database (idempotent, ~20 ms).
  as_postgres "$PG_BIN/psql" -X -q -h "$PGRUN" -p "$PG_PORT" -U postgres -d postgres \
      -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE herald' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herald') \gexec
ALTER ROLE herald LOGIN CREATEDB PASSWORD 'herald';
SELECT 'CREATE DATABASE herald OWNER herald' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'herald') \gexec
SQL
}

pg_down() {
  [ -s "$PGDATA/PG_VERSION" ] || return 0
  # (pg_ctl status would take a zombie or a reused pid for a running server.)
  if pid_matches "$PGDATA/postmaster.pid" "$PGDATA"; then
    log "stopping PostgreSQL"
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t "$STOP_SECONDS" stop >/dev/null \
      || die "pg_ctl stop failed; see $PG_LOG"
  fi
}

# ---------------------------------------------------------------- ClickHouse

ch_ready() { curl -sf -m 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" >/dev/null; }

ch_write_config() {
  mkdir -p "$CH_DIR/data" "$CH_DIR/tmp" "$CH_DIR/user_files" "$CH_DIR/format_schemas"
  # Our own users.xml rather than the package's /etc/clickhouse-server/users.xml, which lets
  # `default` in from ::/0 and logs "Include not found: networks" (18.16 did not resolve
  # that include even with <include_from> set): user `default`, no password, loopback
  # only, no quota limits.
  write_if_changed "$CH_DIR/users.xml" <<'XML' || true
<?xml version="1.0"?>
<!-- Written by scripts/stack.sh on every 'up'; edit the script, not this file. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>10000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
  write_if_changed "$CH_DIR/config.xml" <<XML || true
<?xml version="1.0"?>
<!-- Written by scripts/stack.sh on every 'up'; edit the script, not this file. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG</log>
        <errorlog>$CH_ERRLOG</errorlog>
        <size>50M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>536870912</mark_cache_size>
    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>
    <users_config>$CH_DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <!-- Let tests drop tables of any size. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
</yandex>
XML
}

# ClickHouse 18.16 run in the foreground ignores --pid-file (it wrote none here), so we write
# our own clickhouse.pid; as a fallback (pid file lost), data/status holds "PID: n".
ch_find_pid() {
  pid_matches "$CH_PID" "$CH_DIR/config.xml" && return 0
  local pid
  pid=$(sed -n 's/^PID: *\([0-9][0-9]*\)$/\1/p' "$CH_DIR/data/status" 2>/dev/null | head -n 1)
  [ -n "$pid" ] || return 1
  echo "$pid" >"$CH_PID"
  pid_matches "$CH_PID" "$CH_DIR/config.xml" && return 0
  rm -f "$CH_PID"
  return 1
}

ch_up() {
  ch_write_config
  if ch_ready; then
    ch_find_pid || foreign ClickHouse "$CH_HTTP_PORT"
    return 0
  fi
  if ch_find_pid; then
    wait_ready ClickHouse "$CH_ERRLOG:$CH_STDOUT" "$(pid_of "$CH_PID")" ch_ready
    return 0
  fi
  rm -f "$CH_PID"
  log "starting ClickHouse on 127.0.0.1:$CH_HTTP_PORT (HTTP) and 127.0.0.1:$CH_TCP_PORT (native)"
  # exec all the way down, so that $! is the server's own pid.
  (cd "$CH_DIR" && exec setsid nohup clickhouse-server --config-file="$CH_DIR/config.xml" \
    >>"$CH_STDOUT" 2>&1 </dev/null 9>&-) &
  echo "$!" >"$CH_PID"
  wait_ready ClickHouse "$CH_ERRLOG:$CH_STDOUT" "$!" ch_ready
}

ch_down() {
  ch_find_pid || true
  stop_pidfile ClickHouse "$CH_PID" "$CH_DIR/config.xml"
}

# ---------------------------------------------------------------- commands

# One `up`/`down` at a time (parallel test runs may all call `up`). The servers are started
# with fd 9 closed, or they would hold the lock for ever.
take_lock() {
  exec 9>"$STACK/.lock"
  if ! flock -n 9; then
    log "waiting for another scripts/stack.sh up/down to finish (lock $STACK/.lock)"
    flock -w 600 9 || die "timed out waiting for the lock $STACK/.lock"
  fi
}

status_line() {
  if "$2"; then printf '%-11s up    %s\n' "$1" "$3"; else printf '%-11s down  %s\n' "$1" "$3"; return 1; fi
}

case "${1:-}" in
  up)
    need_root up
    start=${EPOCHREALTIME/[.,]/}
    mkdir -p "$STACK"
    chmod 755 "$STACK"
    take_lock
    install_packages
    pg_check_traversable
    nats_up
    pg_up
    ch_up
    elapsed=$(( (${EPOCHREALTIME/[.,]/} - start) / 1000 ))
    log "up in $((elapsed / 1000)).$(printf %03d $((elapsed % 1000)))s: NATS 127.0.0.1:$NATS_PORT, PostgreSQL 127.0.0.1:$PG_PORT, ClickHouse http://127.0.0.1:$CH_HTTP_PORT"
    ;;
  down)
    need_root down
    [ -d "$STACK" ] || { log "nothing to stop ($STACK does not exist)"; exit 0; }
    take_lock
    ch_down
    pg_down
    nats_down
    for check in "nats_ready NATS $NATS_MONITOR_PORT" "pg_ready PostgreSQL $PG_PORT" "ch_ready ClickHouse $CH_HTTP_PORT"; do
      read -r fn name port <<<"$check"
      if "$fn"; then log "warning: something not started from $STACK still answers on 127.0.0.1:$port ($name)"; fi
    done
    log "stopped (data kept in $STACK)"
    ;;
  status)
    rc=0
    status_line nats nats_ready "nats://127.0.0.1:$NATS_PORT (monitor :$NATS_MONITOR_PORT)" || rc=3
    status_line postgres pg_ready "127.0.0.1:$PG_PORT" || rc=3
    status_line clickhouse ch_ready "http://127.0.0.1:$CH_HTTP_PORT (native :$CH_TCP_PORT)" || rc=3
    exit "$rc"
    ;;
  env)
    echo "export HERALD_NATS_URL=nats://127.0.0.1:$NATS_PORT"
    echo "export HERALD_DATABASE_URL=postgres://herald:herald@127.0.0.1:$PG_PORT/herald"
    echo "export HERALD_CLICKHOUSE_URL=http://127.0.0.1:$CH_HTTP_PORT"
    ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
