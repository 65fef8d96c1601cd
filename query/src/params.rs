//! Query-string and path parameters with errors that name the parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_http::ApiError;
use herald_schemas::{AttemptOutcome, DeliveryStatus, EventStatus};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

pub fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(name, "must be a UUID"))
}

pub fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid(
                name,
                "must be an RFC 3339 time such as 2026-11-23T12:00:00Z (encode `+` as %2B)",
            )
        })
}

pub fn parse_limit(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::invalid(
                "limit",
                format!("must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// A comma-separated list of words from a fixed set (`outcome=dead_lettered,expired`); the
/// error names the word that is not one of them and lists those that are.
pub fn parse_words<T: std::str::FromStr>(
    field: &str,
    what: &str,
    text: &str,
    allowed: &[&str],
) -> Result<Vec<T>, ApiError> {
    text.split(',')
        .map(|word| {
            let word = word.trim();
            word.parse().map_err(|_| {
                ApiError::invalid(
                    field,
                    format!(
                        "`{word}` is not {what}; use one or more of {}, comma-separated",
                        allowed.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// The schema of one word of a comma-list filter, made from the list its parser accepts so
/// that the document cannot drift from the code.
fn word_schema(words: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(words.iter().copied()))
        .description(Some(description))
        .into()
}

/// An attempt outcome, as `outcome` filters take them.
pub struct AttemptOutcomeName;

impl PartialSchema for AttemptOutcomeName {
    fn schema() -> RefOr<Schema> {
        word_schema(
            &AttemptOutcome::ALL.map(AttemptOutcome::as_str),
            "What an attempt came to",
        )
    }
}

impl ToSchema for AttemptOutcomeName {}

/// A delivery status, as `status` filters of attempts take them.
pub struct DeliveryStatusName;

impl PartialSchema for DeliveryStatusName {
    fn schema() -> RefOr<Schema> {
        word_schema(
            &DeliveryStatus::ALL.map(DeliveryStatus::as_str),
            "Where a delivery to one endpoint stands",
        )
    }
}

impl ToSchema for DeliveryStatusName {}

/// An event status, as `status` filters of events take them.
pub struct EventStatusName;

impl PartialSchema for EventStatusName {
    fn schema() -> RefOr<Schema> {
        word_schema(
            &EventStatus::ALL.map(EventStatus::as_str),
            "Where an event stands over all its deliveries",
        )
    }
}

impl ToSchema for EventStatusName {}

/// Cuts a page fetched with `LIMIT limit + 1` back to `limit` rows; when there was more, the
/// cursor of the last row kept, for the next page.
pub fn cut_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> Cursor,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit.max(0) as usize);
    rows.last().map(|last| position(last).encode())
}

/// A position in a list ordered by (time, id). Opaque to clients: 8 bytes of microseconds
/// and the 16 of the id, in URL-safe base64, so that every string of the documented form
/// (`field_schemas::CURSOR_PATTERN`) is a position and a client cannot hold one this API
/// would refuse. A made-up one is only a position before or after every row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// Times a cursor may hold: the years 1-9999, which Postgres and every client can represent.
const EARLIEST_MICROS: i64 = -62_135_596_800_000_000;
const LATEST_MICROS: i64 = 253_402_300_799_999_999;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.at.timestamp_micros().to_be_bytes());
        bytes[8..].copy_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::invalid("cursor", "is not a cursor returned by this API");
        let bytes: [u8; 24] = URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(invalid)?;
        let (micros, id) = bytes.split_at(8);
        let micros = i64::from_be_bytes(micros.try_into().map_err(|_| invalid())?)
            .clamp(EARLIEST_MICROS, LATEST_MICROS);
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = Uuid::from_slice(id).map_err(|_| invalid())?;
        Ok(Self { at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_763_884_800_123_456).expect("time"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).expect("decodes"), cursor);
        assert!(Cursor::decode("not-a-cursor").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12:nope")).is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode([0u8; 25])).is_err());
    }

    #[test]
    fn every_string_of_the_documented_form_is_a_position() {
        let pattern =
            regex::Regex::new(herald_http::field_schemas::CURSOR_PATTERN).expect("pattern");
        for text in [
            "________________________________",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "-0123456789abcdefghijklmnopqrstu",
        ] {
            assert!(pattern.is_match(text), "{text}");
            let cursor = Cursor::decode(text).expect(text);
            assert!((1..=9999).contains(&cursor.at.year()), "{text}: {cursor:?}");
        }
        let cursor = Cursor {
            at: Utc::now(),
            id: Uuid::now_v7(),
        };
        assert!(pattern.is_match(&cursor.encode()));
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 50, 250).expect("default"), 50);
        assert_eq!(parse_limit(Some("250"), 50, 250).expect("max"), 250);
        assert!(parse_limit(Some("0"), 50, 250).is_err());
        assert!(parse_limit(Some("251"), 50, 250).is_err());
        assert!(parse_limit(Some("x"), 50, 250).is_err());
    }
}
