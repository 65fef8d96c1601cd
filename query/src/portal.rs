//! `POST /v1/portal_sessions`: a short-lived link that opens the dashboard for the tenant
//! without its API key, to hand to the tenant's own users (a consumer portal). The link's
//! token is a bearer token for the read routes (and replays, unless read-only); the page may
//! be framed only by the origins named when the session was made.

use crate::state::QueryState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::tenant_auth::PORTAL_TOKEN_PREFIX;
use herald_http::{ApiError, ApiKeyHash, AuthenticatedTenant};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

pub const DEFAULT_EXPIRES_IN_SECONDS: u32 = 3600;
pub const MAX_EXPIRES_IN_SECONDS: u32 = 86_400;
const MAX_FRAME_ANCESTORS: usize = 10;
const MAX_ORIGIN_LENGTH: usize = 253;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalSessionRequest {
    /// Seconds until the link stops working (default 3600).
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 60, maximum = 86400)]
    pub expires_in: Option<u32>,
    /// A read-only session can look but not replay (default false).
    pub read_only: Option<bool>,
    /// Origins (`https://app.example.com`, `https://*.example.com`) whose pages may embed
    /// the dashboard in an iframe; without any, it cannot be framed.
    #[schema(max_items = 10, value_type = Option<Vec<FrameOrigin>>)]
    pub frame_ancestors: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSessionCreated {
    /// Opens the dashboard for the tenant; give it to one user, it works until `expires_at`.
    pub url: String,
    /// The bearer token inside `url` (`hps_…`), for API calls on the user's behalf.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub read_only: bool,
    pub frame_ancestors: Vec<String>,
}

#[utoipa::path(
    post, path = "/v1/portal_sessions", tag = "portal",
    request_body(content = Option<PortalSessionRequest>, description = "Optional; no body makes a one-hour session that may replay and cannot be framed"),
    responses(
        (status = 201, body = PortalSessionCreated),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Portal sessions cannot make portal sessions", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_portal_session(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    body: Bytes,
) -> Result<(StatusCode, Json<PortalSessionCreated>), ApiError> {
    let request: PortalSessionRequest = herald_http::json_body::parse_optional(&body)?;
    let expires_in = request.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_SECONDS);
    if !(60..=MAX_EXPIRES_IN_SECONDS).contains(&expires_in) {
        return Err(ApiError::invalid(
            "expires_in",
            format!("must be 60-{MAX_EXPIRES_IN_SECONDS} seconds"),
        ));
    }
    let frame_ancestors = request.frame_ancestors.unwrap_or_default();
    if frame_ancestors.len() > MAX_FRAME_ANCESTORS {
        return Err(ApiError::invalid(
            "frame_ancestors",
            format!("at most {MAX_FRAME_ANCESTORS} origins"),
        ));
    }
    let frame_ancestors = frame_ancestors
        .iter()
        .enumerate()
        .map(|(index, origin)| {
            frame_origin(origin)
                .map_err(|message| ApiError::invalid(format!("frame_ancestors[{index}]"), message))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let read_only = request.read_only.unwrap_or(false);
    let token = herald_http::api_key::random_token(PORTAL_TOKEN_PREFIX);
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::from(expires_in));
    herald_store::portal_sessions::insert(
        &state.pool,
        &ApiKeyHash::of(&token).0,
        tenant_id,
        read_only,
        &frame_ancestors,
        expires_at,
    )
    .await
    .map_err(|error| ApiError::internal(&error))?;
    tracing::info!(%tenant_id, read_only, expires_in, "portal session created");
    Ok((
        StatusCode::CREATED,
        Json(PortalSessionCreated {
            url: format!("{}/portal/{token}", state.public_url),
            token,
            expires_at,
            read_only,
            frame_ancestors,
        }),
    ))
}

/// Exactly what [`frame_origin`] admits.
pub const FRAME_ORIGIN_PATTERN: &str = "^[Hh][Tt][Tt][Pp][Ss]?://(?:\\*\\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[0-5][0-9]{4}|[0-9]{1,4}))?$";

/// An origin a portal page may be framed by, for the document.
pub struct FrameOrigin;

impl PartialSchema for FrameOrigin {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(FRAME_ORIGIN_PATTERN))
            .max_length(Some(MAX_ORIGIN_LENGTH))
            .description(Some(
                "An origin: scheme, host (`*.` for every subdomain) and port, nothing else",
            ))
            .examples([serde_json::json!("https://app.example.com")])
            .into()
    }
}

impl ToSchema for FrameOrigin {}

/// An origin as CSP `frame-ancestors` takes it: scheme, host (optionally `*.` for every
/// subdomain) and port, nothing else, so that no value can add a directive.
pub fn frame_origin(origin: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "must be an origin such as https://app.example.com (scheme, host and \
                         port only; *.example.com for every subdomain)";
    if origin.len() > MAX_ORIGIN_LENGTH {
        return Err("must be at most 253 characters");
    }
    let origin = origin.to_ascii_lowercase();
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(SHAPE)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    let host_ok = !host.is_empty()
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    });
    if host_ok && port_ok {
        Ok(origin)
    } else {
        Err(SHAPE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://app.example.com",
            "HTTPS://App.Example.com",
            "http://localhost:3000",
            "https://*.example.com",
            "http://127.0.0.1:8080",
        ] {
            assert!(frame_origin(good).is_ok(), "{good}");
        }
        assert_eq!(
            frame_origin("HTTPS://App.Example.com").as_deref(),
            Ok("https://app.example.com")
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://a.example.com; script-src *",
            "https://a.example.com https://b.example.com",
            "javascript://x",
            "https://",
            "https://host:",
            "https://host:123456",
            "https://host:65536",
            "https://-host",
            "https://host.",
            "https://*",
            "'self'",
            "*",
        ] {
            assert!(frame_origin(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// The document's pattern and the rule agree both ways.
        #[test]
        fn the_pattern_states_the_rule(
            origin in proptest::string::string_regex(
                "[Hh][Tt]{2}[Pp][Ss]?://(\\*\\.)?[A-Za-z0-9.:*-]{0,12}(:[0-9]{1,6})?"
            ).expect("regex")
        ) {
            let pattern = regex::Regex::new(FRAME_ORIGIN_PATTERN).expect("pattern");
            proptest::prop_assert_eq!(pattern.is_match(&origin), frame_origin(&origin).is_ok(), "{}", origin);
        }
    }
}
