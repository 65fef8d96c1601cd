//! API errors as `application/problem+json` (RFC 9457). Messages say what the caller can do
//! about the error; internal details are logged, never returned.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error body as described by RFC 9457.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// The request field at fault, as a JSON path (`payload`, `events[2]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub enum ApiError {
    Unauthorized(String),
    /// Authenticated, but this credential may not do that (a read-only portal session).
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    MalformedJson(String),
    BadRequest(String),
    InvalidField {
        field: String,
        message: String,
    },
    PayloadTooLarge {
        limit_bytes: usize,
    },
    RateLimited {
        retry_after: std::time::Duration,
        what: String,
    },
    Unavailable(String),
    Internal,
}

impl std::error::Error for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.status().as_u16(), self.detail())
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with its field named inside `parent` (`rate_limit.burst` becomes
    /// `ingest_rate_limit.burst` when a shared check is reused under another name).
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::InvalidField { field, message } => Self::InvalidField {
                field: match field.split_once('.') {
                    Some((_, rest)) => format!("{parent}.{rest}"),
                    None => format!("{parent}.{field}"),
                },
                message,
            },
            other => other,
        }
    }

    /// Logs the cause and hides it from the caller.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::Internal
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Conflict(_) => "conflict",
            Self::MalformedJson(_) => "malformed-json",
            Self::BadRequest(_) => "bad-request",
            Self::InvalidField { .. } => "invalid-field",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::RateLimited { .. } => "rate-limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal => "internal",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Unauthorized(message)
            | Self::Forbidden(message)
            | Self::NotFound(message)
            | Self::Conflict(message)
            | Self::BadRequest(message)
            | Self::Unavailable(message) => message.clone(),
            Self::MalformedJson(message) => format!("request body is not valid JSON: {message}"),
            Self::InvalidField { field, message } => format!("`{field}`: {message}"),
            Self::PayloadTooLarge { limit_bytes } => {
                format!("request body exceeds the limit of {limit_bytes} bytes")
            }
            Self::RateLimited { retry_after, what } => format!(
                "too many {what}; retry after {} ms",
                retry_after.as_millis().max(1)
            ),
            Self::Internal => {
                "the server failed to handle the request; it was logged, retry later".to_owned()
            }
        }
    }

    pub fn to_problem(&self) -> ProblemDetails {
        let status = self.status();
        ProblemDetails {
            problem_type: format!("https://herald.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            field: match self {
                Self::InvalidField { field, .. } => Some(field.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::RateLimited { retry_after, .. } = &self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            return Self::Unavailable("the database is unavailable; retry later".to_owned());
        }
        Self::internal(&error)
    }
}

/// Errors that say the database is down, restarting or out of connections rather than that
/// the request was wrong: the same request can succeed once it is back.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57
        // (operator intervention: shutting down, crash recovery, starting up).
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}
