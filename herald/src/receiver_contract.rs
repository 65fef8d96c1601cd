//! What a receiver gets, in the OpenAPI document's `webhooks` (OpenAPI 3.1): the request
//! Herald POSTs to an endpoint (body, signature and trace headers) and what each kind of
//! answer leads to. utoipa has no model of `webhooks`, so this part is written as JSON;
//! `herald/tests/openapi_conformance.rs` checks a real delivery against it.

use serde_json::{json, Value};

/// One or more `v1,<base64 HMAC-SHA256>` signatures, space-separated (two during a secret
/// rotation's grace period).
const SIGNATURE_PATTERN: &str = "^v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=)*$";

/// W3C trace context, version 00.
const TRACEPARENT_PATTERN: &str = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";

pub fn add_to(document: &mut Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("WebhookPayload".to_owned(), payload_schema());
    }
    if let Some(document) = document.as_object_mut() {
        document.insert("webhooks".to_owned(), json!({ "event": event_webhook() }));
    }
}

fn payload_schema() -> Value {
    json!({
        "type": "object",
        "description": "The body of every webhook, signed byte for byte as sent.",
        "required": ["type", "timestamp", "data"],
        "additionalProperties": false,
        "properties": {
            "type": { "$ref": "#/components/schemas/EventTypeName" },
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When this attempt was made (UTC, milliseconds); differs between retries."
            },
            "data": { "$ref": "#/components/schemas/EventPayload" }
        }
    })
}

fn header(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "header",
        "required": true,
        "description": description,
        "schema": schema
    })
}

fn event_webhook() -> Value {
    json!({
        "post": {
            "tags": ["webhooks"],
            "summary": "An event, delivered to an endpoint",
            "description": "Herald POSTs every event to each endpoint it is routed to, signed per Standard Webhooks. Verify `webhook-signature` over the raw body before parsing it, reject timestamps far from now, and drop repeats by `webhook-id`: a delivery may arrive more than once (a retry after a lost answer, a replay).",
            "parameters": [
                header("webhook-id", "The event's id: the same on every retry and replay of the event, to drop duplicates by.", json!({ "type": "string", "format": "uuid" })),
                header("webhook-timestamp", "Unix seconds when this attempt was signed.", json!({ "type": "string", "pattern": "^[0-9]{1,12}$" })),
                header("webhook-signature", "`v1,` and the base64 HMAC-SHA256, keyed with the secret's bytes (the base64 after `whsec_`), of `<webhook-id>.<webhook-timestamp>.<body>`. During a secret rotation's grace period two signatures, space-separated, the new secret's first: accept the message if any one verifies.", json!({ "type": "string", "pattern": SIGNATURE_PATTERN })),
                header("traceparent", "W3C trace context; its trace id is the event's `trace_id`, a new span id per attempt.", json!({ "type": "string", "pattern": TRACEPARENT_PATTERN })),
                header("user-agent", "`Herald/<version>`", json!({ "type": "string", "pattern": "^Herald/" })),
            ],
            "requestBody": {
                "required": true,
                "content": {
                    "application/json": { "schema": { "$ref": "#/components/schemas/WebhookPayload" } }
                }
            },
            "responses": {
                "2XX": { "description": "Delivered: nothing more is sent for this event to this endpoint (unless replayed). Answer quickly and process later; the body is not read beyond 64 KiB, only hashed." },
                "3XX": { "description": "Failed, not retried: redirects are never followed." },
                "408": { "description": "Retried." },
                "409": { "description": "Retried." },
                "410": { "description": "Failed, not retried, and the endpoint is disabled (its `disabled_reason` says so)." },
                "425": { "description": "Retried." },
                "429": {
                    "description": "Retried, no sooner than `Retry-After` says (up to the policy's longest delay).",
                    "headers": { "Retry-After": { "description": "Seconds, or an HTTP date", "schema": { "type": "string" } } }
                },
                "4XX": { "description": "Other 4xx: failed, not retried." },
                "5XX": {
                    "description": "Retried with backoff until the retry policy's attempts or deadline run out; `Retry-After` is honoured.",
                    "headers": { "Retry-After": { "description": "Seconds, or an HTTP date", "schema": { "type": "string" } } }
                }
            }
        }
    })
}
