#!/usr/bin/env python3
"""Checks Herald's ClickHouse SQL against current ClickHouse, in-process.

The local stack runs ClickHouse 18.16 (Debian), where the end-to-end tests exercise every
statement; this runs the same SQL on the ClickHouse engine of the PyPI package `chdb-core`
(pinned in scripts/python-requirements.txt), so that nothing Herald ships works on one of
them only. It installs nothing: run it with the venv of scripts/python-venv.sh, as
`make test` does:

    scripts/python-venv.sh >/dev/null && .stack/venv/bin/python scripts/check-clickhouse-sql.py

What it does, in a throw-away in-process server:
1. applies migrations/clickhouse/*.sql in order (`{database}` replaced, split into
   statements as herald/src/migrate.rs splits them), with sample attempts inserted before
   the SLI rollups exist (so the backfill has history to count) and after (the live views);
2. checks that the rollups hold exactly the counts of `attempts`, per minute and per hour,
   tenant, endpoint, event type, outcome and error class; that running 0003 again changes
   nothing; and that each refill view aggregates word for word like its live view;
3. runs every ```sql block of docs/clickhouse.md as it is, and requires rows from each;
4. requires every column of the public views and rollups to be named in docs/clickhouse.md.

Exit status 0 when everything passed, 1 otherwise (each failure is printed).
"""

import pathlib
import re
import sys
import time

try:
    from chdb.session import Session
except ImportError:
    sys.exit(
        "check-clickhouse-sql: the module `chdb` is missing; run this with the venv of "
        "scripts/python-venv.sh: .stack/venv/bin/python scripts/check-clickhouse-sql.py"
    )

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations" / "clickhouse"
DOC = ROOT / "docs" / "clickhouse.md"
DATABASE = "herald"
# The tenant id the examples of docs/clickhouse.md use.
EXAMPLE_TENANT = "0190a1b2-0000-7000-8000-000000000001"
OTHER_TENANT = "0190a1b2-0000-7000-8000-000000000002"
# The migration that creates the rollups: sample rows go in before it and after it.
ROLLUPS_MIGRATION = "0003_sli_rollups.sql"

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def statements(sql):
    """Splits a migration like herald/src/migrate.rs: at semicolons that end a line,
    dropping parts that are only comments."""
    for part in sql.split(";\n"):
        part = part.strip()
        if any(line.strip() and not line.strip().startswith("--") for line in part.splitlines()):
            yield part


def run_migration(session, path):
    sql = path.read_text().replace("{database}", DATABASE)
    for number, statement in enumerate(statements(sql), 1):
        try:
            session.query(statement)
        except Exception as error:  # chdb raises its own error type; report any
            first_line = next(l for l in statement.splitlines() if l.strip() and not l.strip().startswith("--"))
            fail(f"{path.name} statement {number} ({first_line.strip()[:80]}): {error}")


def sample_attempts(base_sequence, minutes_ago):
    """Attempt rows of two tenants, two endpoints and two event types with every outcome,
    request and no-request classes, a success after retries, and a late record."""
    rows = []
    shapes = [
        # outcome, error_class, http_status, latency_ms, end_to_end_ms
        ("succeeded", "", 200, 35, 120),
        ("succeeded", "", 204, 80, 950),
        ("retry_scheduled", "http_5xx", 503, 120, 0),
        ("retry_scheduled", "timeout", 0, 2000, 0),
        ("succeeded", "", 200, 40, 4300),
        ("failed", "http_4xx", 400, 25, 0),
        ("retry_scheduled", "http_429", 429, 15, 0),
        ("dead_lettered", "http_5xx", 500, 60, 0),
        ("dead_lettered", "circuit_open", 0, 0, 0),
        ("expired", "expired", 0, 0, 0),
        ("retry_scheduled", "connection", 0, 3, 0),
        ("expired", "http_5xx", 502, 45, 0),
    ]
    sequence = base_sequence
    for tenant in (EXAMPLE_TENANT, OTHER_TENANT):
        for endpoint in ("e1", "e2"):
            for event_type in ("invoice.paid", "order.created"):
                for index, (outcome, error_class, status, latency, end_to_end) in enumerate(shapes):
                    sequence += 1
                    seconds_ago = minutes_ago * 60 + index * 7
                    rows.append(
                        f"('a{sequence}', 'ev{sequence}', '{tenant[-1]}-{endpoint}', '{tenant}', "
                        f"'{event_type}', '', 1, now() - {seconds_ago + 5}, now() - {seconds_ago}, "
                        f"now() - {seconds_ago}, now() - {seconds_ago}, {status}, '{error_class}', "
                        f"'{outcome}', {latency}, {end_to_end}, {sequence}, '')"
                    )
    # A late record: its attempt started two days ago, it is inserted now.
    sequence += 1
    rows.append(
        f"('a{sequence}', 'ev{sequence}', '1-e1', '{EXAMPLE_TENANT}', 'invoice.paid', '', 3, "
        f"now() - 172900, now() - 172800, now() - 172800, now() - 172790, 200, '', 'succeeded', "
        f"70, 10000, {sequence}, '')"
    )
    insert = (
        f"INSERT INTO {DATABASE}.attempts (attempt_id, event_id, endpoint_id, tenant_id, "
        "event_type, trace_id, attempt_number, event_accepted_at, scheduled_at, started_at, "
        "finished_at, http_status, error_class, outcome, latency_ms, end_to_end_ms, "
        "log_sequence, response_body_hash) VALUES " + ", ".join(rows)
    )
    return insert, sequence


def rows_of(session, sql):
    text = str(session.query(sql, "TSV"))
    return [line.split("\t") for line in text.splitlines() if line]


def check_rollups_equal_raw(session, label):
    for grain, bucket in (("minute", "toStartOfMinute"), ("hour", "toStartOfHour")):
        raw = rows_of(
            session,
            f"SELECT {bucket}(started_at) AS period_start, tenant_id, endpoint_id, event_type, "
            "outcome, error_class, count() FROM attempts GROUP BY period_start, tenant_id, "
            "endpoint_id, event_type, outcome, error_class ORDER BY period_start, tenant_id, "
            "endpoint_id, event_type, outcome, error_class",
        )
        rolled = rows_of(
            session,
            f"SELECT period_start, tenant_id, endpoint_id, event_type, outcome, error_class, "
            f"attempts FROM sli_outcomes_{grain} ORDER BY period_start, tenant_id, endpoint_id, "
            "event_type, outcome, error_class",
        )
        if raw != rolled:
            fail(f"{label}: sli_outcomes_{grain} ({len(rolled)} rows) differs from the counts of attempts ({len(raw)} rows)")
        totals = rows_of(
            session,
            f"SELECT (SELECT count() FROM attempts), (SELECT sum(attempts) FROM sli_{grain}), "
            f"(SELECT sum(attempts) FROM sli_tenant_{grain}), "
            f"(SELECT sum(successes) FROM sli_{grain}), "
            f"(SELECT countIf(outcome = 'succeeded') FROM attempts)",
        )[0]
        if len(set(totals[:3])) != 1 or totals[3] != totals[4]:
            fail(f"{label}: totals of sli_{grain} / sli_tenant_{grain} differ from attempts: {totals}")


def check_refill_views_mirror_live_views(sql_text):
    views = {}
    for statement in statements(sql_text):
        code = "\n".join(l for l in statement.splitlines() if not l.strip().startswith("--"))
        match = re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS \{database\}\.(\w+)\s", code)
        if match:
            views[match.group(1)] = code
    for grain in ("minute", "hour"):
        live = views.get(f"sli_{grain}_rollup_mv")
        refill = views.get(f"sli_{grain}_refill_mv")
        if live is None or refill is None:
            fail(f"{ROLLUPS_MIGRATION}: sli_{grain}_rollup_mv or sli_{grain}_refill_mv is missing")
            continue
        as_live = refill.replace(f"sli_{grain}_refill_mv", f"sli_{grain}_rollup_mv").replace(
            f"FROM {{database}}.sli_{grain}_refill", "FROM {database}.attempts"
        )
        if as_live != live:
            fail(f"{ROLLUPS_MIGRATION}: sli_{grain}_refill_mv does not aggregate like sli_{grain}_rollup_mv")


def check_examples(session):
    blocks = re.findall(r"^```sql\n(.*?)^```", DOC.read_text(), re.M | re.S)
    if not blocks:
        fail(f"{DOC.name}: no ```sql blocks found")
    for number, block in enumerate(blocks, 1):
        first_line = block.strip().splitlines()[0]
        try:
            result = rows_of(session, block)
        except Exception as error:
            fail(f"{DOC.name} example {number} ({first_line}…): {error}")
            continue
        if not result:
            fail(f"{DOC.name} example {number} ({first_line}…) returned no rows on the sample data")
        else:
            print(f"ok   example {number}: {len(result)} rows")
    return len(blocks)


# The tables and views docs/clickhouse.md documents column by column.
DOCUMENTED = [
    "sli_minute", "sli_hour", "sli_tenant_minute", "sli_tenant_hour",
    "sli_outcomes_minute", "sli_outcomes_hour", "sli_minute_rollup", "sli_hour_rollup",
]


def check_columns_documented(session):
    doc = DOC.read_text()
    for table in DOCUMENTED:
        for name, _type, *_ in rows_of(session, f"DESCRIBE TABLE {table}"):
            if f"`{name}`" not in doc:
                fail(f"{DOC.name} does not document column `{name}` of {table}")


def main():
    started = time.monotonic()
    session = Session()
    version = rows_of(session, "SELECT version()")[0][0]
    session.query(f"CREATE DATABASE {DATABASE}")
    session.query(f"USE {DATABASE}")
    migrations = sorted(MIGRATIONS.glob("*.sql"))
    sequence = 0
    for path in migrations:
        if path.name == ROLLUPS_MIGRATION:
            insert, sequence = sample_attempts(sequence, minutes_ago=30)
            session.query(insert)
        run_migration(session, path)
        print(f"ok   {path.name}")
    insert, sequence = sample_attempts(sequence, minutes_ago=5)
    session.query(insert)
    check_rollups_equal_raw(session, "after backfill and live inserts")

    rollups_sql = (MIGRATIONS / ROLLUPS_MIGRATION).read_text()
    check_refill_views_mirror_live_views(rollups_sql)
    run_migration(session, MIGRATIONS / ROLLUPS_MIGRATION)
    check_rollups_equal_raw(session, f"after running {ROLLUPS_MIGRATION} again")

    check_columns_documented(session)
    examples = check_examples(session)
    session.close()
    elapsed = time.monotonic() - started
    if failures:
        print(f"check-clickhouse-sql: {len(failures)} failure(s) on ClickHouse {version}")
        return 1
    print(
        f"check-clickhouse-sql: {len(migrations)} migrations and {examples} examples of "
        f"{DOC.relative_to(ROOT)} pass on ClickHouse {version} (chdb) in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
