"""Rules of Herald's API that the OpenAPI document states in words but JSON Schema cannot
express: each compares a field with another field, with the current time, or with a list
of names Herald keeps for itself. Schemathesis
loads this module (SCHEMATHESIS_HOOKS, set by openapi_conformance.rs) and does not send a
generated request that breaks one of them, since Herald refuses such a request with a 422
naming the field, as the document says. Keep this list short: a rule that can be stated in
the schema belongs there, and one that need not be a rule should not be (ADR 0016)."""

from datetime import datetime, timedelta, timezone

import schemathesis

# `deliver_after` is at most this far ahead (command/src/events.rs).
MAX_SCHEDULE_AHEAD = timedelta(days=30)


# Header names an endpoint cannot set (command/src/endpoint_headers.rs): Herald's own and the
# connection's. The schema's pattern says which characters a name may have, not these.
RESERVED_HEADERS = {
    "host", "content-type", "content-length", "content-encoding", "transfer-encoding",
    "connection", "keep-alive", "te", "trailer", "upgrade", "expect", "user-agent",
    "traceparent", "tracestate", "proxy-authorization", "proxy-connection",
}


def _breaks_endpoint_rules(case):
    body = case.body if isinstance(case.body, dict) else {}
    headers = body.get("headers")
    if isinstance(headers, dict):
        names = [name.lower() for name in headers]
        if any(name in RESERVED_HEADERS or name.startswith("webhook-") for name in names):
            return True
    # An ed25519 endpoint's key pair is Herald's to make: it takes no `secret`.
    if body.get("signature_scheme") == "v1a" and body.get("secret") is not None:
        return True
    return False


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
    if operation.path.startswith("/v1/webhook_endpoints") and operation.method.upper() in ("POST", "PATCH"):
        return not _breaks_endpoint_rules(case)
    return True
