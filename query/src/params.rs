//! Query-string and path parameters with errors that name the parameter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use herald_http::ApiError;
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

/// A position in a list ordered by (time, id) descending. Opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::invalid("cursor", "is not a cursor returned by this API");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Self { at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_763_884_800_123_456).expect("time"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).expect("decodes"), cursor);
        assert!(Cursor::decode("not-a-cursor").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12:nope")).is_err());
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
