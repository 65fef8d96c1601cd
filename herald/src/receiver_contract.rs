//! What a receiver gets, in the OpenAPI document's `webhooks` (OpenAPI 3.1): the request
//! Herald POSTs to an endpoint (body, signature and trace headers) and what each kind of
//! answer leads to, for producers' events (`event`) and for each of Herald's own `herald.…`
//! events. utoipa has no model of `webhooks`, so this part is written as JSON;
//! `herald/tests/openapi_conformance.rs` checks a real delivery against it.

use serde_json::{json, Value};

/// One or more `v1,<base64 HMAC-SHA256>` signatures, space-separated (two during a secret
/// rotation's grace period).
const SIGNATURE_PATTERN: &str = "^v1,[A-Za-z0-9+/]{43}=( v1,[A-Za-z0-9+/]{43}=)*$";

/// W3C trace context, version 00.
const TRACEPARENT_PATTERN: &str = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";

pub fn add_to(document: &mut Value) {
    let operational = OperationalSchemas::generate();
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("WebhookPayload".to_owned(), payload_schema());
        for (name, schema) in &operational.components {
            schemas
                .entry(name.clone())
                .or_insert_with(|| schema.clone());
        }
    }
    let mut webhooks = serde_json::Map::new();
    webhooks.insert(
        "event".to_owned(),
        webhook(
            "An event, delivered to an endpoint",
            "Herald POSTs every event to each endpoint it is routed to, signed per Standard Webhooks. Verify `webhook-signature` over the raw body before parsing it, reject timestamps far from now, and drop repeats by `webhook-id`: a delivery may arrive more than once (a retry after a lost answer, a replay).",
            json!({ "$ref": "#/components/schemas/WebhookPayload" }),
        ),
    );
    for (event_type, notice) in &operational.types {
        webhooks.insert(
            event_type.clone(),
            webhook(
                &format!("Herald's own `{event_type}` event"),
                &format!("Sent only to endpoints that list `{event_type}` in `events`, signed and retried like any event. The failure of such a delivery is never itself announced."),
                operational_payload_schema(event_type, notice),
            ),
        );
    }
    if let Some(document) = document.as_object_mut() {
        document.insert("webhooks".to_owned(), Value::Object(webhooks));
    }
}

/// Herald's own event types with the schema of each one's `data`, generated from
/// [`herald_schemas::OperationalEvent`] (the same source as
/// `schemas/json/operational-events.schema.json`), its definitions moved to the document's
/// components.
struct OperationalSchemas {
    /// (event type, name of its `data` schema in the components)
    types: Vec<(String, String)>,
    components: serde_json::Map<String, Value>,
}

impl OperationalSchemas {
    fn generate() -> Self {
        let generated =
            serde_json::to_value(schemars::schema_for!(herald_schemas::OperationalEvent))
                .unwrap_or_default()
                .to_string()
                .replace("#/$defs/", "#/components/schemas/");
        let root: Value = serde_json::from_str(&generated).unwrap_or_default();
        let types = root["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variant| {
                let event_type = variant.pointer("/properties/type/const")?.as_str()?;
                let notice = variant
                    .pointer("/properties/data/$ref")?
                    .as_str()?
                    .strip_prefix("#/components/schemas/")?;
                Some((event_type.to_owned(), notice.to_owned()))
            })
            .collect();
        let components = root["$defs"].as_object().cloned().unwrap_or_default();
        Self { types, components }
    }
}

fn operational_payload_schema(event_type: &str, notice: &str) -> Value {
    json!({
        "type": "object",
        "description": format!("The body of a `{event_type}` webhook, signed byte for byte as sent."),
        "required": ["type", "timestamp", "data"],
        "additionalProperties": false,
        "properties": {
            "type": { "type": "string", "const": event_type },
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When this attempt was made (UTC, milliseconds); differs between retries."
            },
            "data": { "$ref": format!("#/components/schemas/{notice}") }
        }
    })
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

/// A webhook as receivers get it: the same headers and answers for every kind, only the
/// body differs.
fn webhook(summary: &str, description: &str, body_schema: Value) -> Value {
    json!({
        "post": {
            "tags": ["webhooks"],
            "summary": summary,
            "description": description,
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
                    "application/json": { "schema": body_schema }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operational type has its webhook and its body's schema, and a definition the
    /// routes' components already had is the same one (no name means two things).
    #[test]
    fn every_operational_type_is_a_webhook_with_its_own_body() {
        let mut document = crate::openapi::document();
        let operational = OperationalSchemas::generate();
        assert_eq!(
            operational
                .types
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>(),
            herald_schemas::OperationalEvent::TYPE_NAMES
        );
        for (name, schema) in &operational.components {
            assert_eq!(
                document.pointer(&format!("/components/schemas/{name}")),
                Some(schema),
                "{name}"
            );
        }
        for (event_type, notice) in &operational.types {
            let body = document
                .pointer(&format!(
                    "/webhooks/{event_type}/post/requestBody/content/application~1json/schema"
                ))
                .cloned()
                .unwrap_or_default();
            assert_eq!(body["properties"]["type"]["const"], event_type.as_str());
            assert!(document
                .pointer(&format!("/components/schemas/{notice}"))
                .is_some());
        }
        add_to(&mut document);
        assert!(document.pointer("/webhooks/event/post").is_some());
    }
}
