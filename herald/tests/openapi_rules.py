"""Rules of Herald's API that the OpenAPI document states in words but JSON Schema cannot
express: each compares a field with another field or with the current time. Schemathesis
loads this module (SCHEMATHESIS_HOOKS, set by openapi_conformance.rs) and does not send a
generated request that breaks one of them, since Herald refuses such a request with a 422
naming the field, as the document says. Keep this list short: a rule that can be stated in
the schema belongs there, and one that need not be a rule should not be (ADR 0016)."""

from datetime import datetime, timedelta, timezone

import schemathesis

# `deliver_after` is at most this far ahead (command/src/events.rs).
MAX_SCHEDULE_AHEAD = timedelta(days=30)


def _time(value):
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _breaks_event_rules(case):
    body = case.body if isinstance(case.body, dict) else {}
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    header_key = headers.get("idempotency-key")
    body_key = body.get("idempotency_key")
    # Both given and different: which one is meant cannot be known.
    if header_key is not None and body_key is not None and header_key != body_key:
        return True
    deliver_after = _time(body.get("deliver_after"))
    if deliver_after is not None and deliver_after.tzinfo is not None:
        if deliver_after - datetime.now(timezone.utc) > MAX_SCHEDULE_AHEAD - timedelta(minutes=1):
            return True
    return False


@schemathesis.hook
def filter_case(context, case):
    operation = context.operation
    if operation is None:
        return True
    if operation.method.upper() == "POST" and operation.path == "/v1/events":
        return not _breaks_event_rules(case)
    return True
