//! A JSON body extractor whose rejections are problem+json: 413 past the body limit, 400 for
//! bytes that are not JSON, 422 naming the field whose value does not fit.

use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The body limit is axum's `DefaultBodyLimit`, set once on the router from configuration.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map(|limit| limit.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit_bytes: limit }
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Carried as a request extension so that the 413 message can state the limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// For `#[serde(default, deserialize_with = "…::present")]` on an `Option<Option<T>>` field
/// of a PATCH body: tells a field sent as `null` (`Some(None)`) from one left out (`None`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// A body that may be left out: no bytes (or only whitespace) and `null` both mean the
/// defaults, as the OpenAPI document says of an optional, nullable body.
pub fn parse_optional<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(parse::<Option<T>>(bytes)?.unwrap_or_default())
}

#[cfg(test)]
mod optional_body_tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        name: Option<String>,
        count: Option<u32>,
    }

    #[test]
    fn bodies_are_objects_or_left_out() {
        assert_eq!(
            parse_optional::<Options>(b"").expect("empty"),
            Options::default()
        );
        assert_eq!(
            parse_optional::<Options>(b" null ").expect("null"),
            Options::default()
        );
        assert_eq!(
            parse_optional::<Options>(br#"{"count": 2}"#).expect("object"),
            Options {
                name: None,
                count: Some(2)
            }
        );
        for array in [&b"[null, null]"[..], b" [\"a\", 1]", b"[]"] {
            let error = parse_optional::<Options>(array).expect_err("an array is refused");
            assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
        assert_eq!(
            parse::<Options>(b"{").expect_err("not JSON").status(),
            axum::http::StatusCode::BAD_REQUEST
        );
    }
}

/// Parses JSON, telling syntax errors (400) apart from values of the wrong shape (422).
/// Every request body is an object: serde would read a struct from an array of its fields
/// in order (`[null, null]`), which no client means and the OpenAPI document does not allow.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid(
            ".",
            "the body must be a JSON object, not an array",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        classify(path, error.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    Ok(value)
}

fn classify(path: String, error: serde_json::Error) -> ApiError {
    match error.classify() {
        serde_json::error::Category::Data => {
            let message = strip_position(&error.to_string());
            let field = if path == "." {
                missing_field_name(&message).unwrap_or_else(|| "body".to_owned())
            } else {
                path
            };
            ApiError::invalid(field, message)
        }
        _ => ApiError::MalformedJson(error.to_string()),
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse::<Body>(b"{\"name\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Body>(br#"{"name":"a"} trailing"#),
            Err(ApiError::MalformedJson(_))
        ));
    }

    #[test]
    fn shape_errors_name_the_field() {
        match parse::<Body>(br#"{"name": 5}"#) {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "name"),
            other => panic!("unexpected {other:?}"),
        }
        match parse::<Body>(br#"{"name": "a", "tags": ["x", 3]}"#) {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "tags[1]"),
            other => panic!("unexpected {other:?}"),
        }
        match parse::<Body>(br#"{"tags": []}"#) {
            Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "name"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
