//! Named schemas for strings that follow a rule, so that the OpenAPI document states the
//! rule and a client (or a fuzzer) knows beforehand what a service accepts. Each service
//! checks the same rule in code and has a test that the two agree.

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Letters, digits and `.` `_` `-` `:`, 1-128 of them.
pub const EVENT_TYPE_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// 24 bytes in URL-safe base64 without padding: every string of this form is a position.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{32}$";

/// Text without control characters other than tab and line breaks (Postgres cannot hold
/// NUL, and the others garble every display).
pub const FREE_TEXT_PATTERN: &str =
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// Whether `value` is an event type (`EVENT_TYPE_PATTERN`), the rule every route that takes
/// one applies.
pub fn is_event_type(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// An event type such as `invoice.paid`.
pub struct EventTypeName;

impl PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(EVENT_TYPE_PATTERN))
            .min_length(Some(1))
            .max_length(Some(128))
            .description(Some("An event type: letters, digits and `.` `_` `-` `:`"))
            .examples([serde_json::json!("invoice.paid")])
            .into()
    }
}

impl ToSchema for EventTypeName {}

/// The `next_cursor` of a page, passed back as `cursor` for the next one.
pub struct PageCursor;

impl PartialSchema for PageCursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(CURSOR_PATTERN))
            .description(Some(
                "An opaque position in a list: the `next_cursor` of the previous page",
            ))
            .into()
    }
}

impl ToSchema for PageCursor {}

/// An event's payload: any JSON value but null.
pub struct EventPayload;

impl PartialSchema for EventPayload {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::Object,
                Type::Array,
                Type::String,
                Type::Number,
                Type::Boolean,
            ]))
            .description(Some("Any JSON value but null; delivered as `data`"))
            .into()
    }
}

impl ToSchema for EventPayload {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_type_rule_and_its_pattern_agree() {
        let pattern = regex::Regex::new(EVENT_TYPE_PATTERN).expect("pattern");
        let long = "a".repeat(129);
        for text in [
            "invoice.paid",
            "a",
            "A-b_c:d.9",
            "",
            "has space",
            "é",
            "a\n",
            "a/b",
            &long,
            &long[1..],
        ] {
            assert_eq!(pattern.is_match(text), is_event_type(text), "{text:?}");
        }
    }
}
