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

/// Parses JSON, telling syntax errors (400) apart from values of the wrong shape (422).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
