//! `GET /v1/session`: what the presented token is, so that the dashboard can check a key at
//! login and know whether a portal session may replay.

use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{Caller, Credential};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub tenant_id: Uuid,
    /// `api_key` or `portal_session`.
    pub credential: String,
    /// A read-only portal session cannot replay.
    pub read_only: bool,
    /// When a portal session ends; null for an API key.
    pub expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(
    get, path = "/v1/session", tag = "portal",
    responses(
        (status = 200, body = SessionView),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn get_session(caller: Caller) -> Json<SessionView> {
    let (credential, read_only, expires_at) = match caller.credential {
        Credential::ApiKey { .. } => ("api_key", false, None),
        Credential::PortalSession {
            read_only,
            expires_at,
        } => ("portal_session", read_only, Some(expires_at)),
    };
    Json(SessionView {
        tenant_id: caller.tenant_id.as_uuid(),
        credential: credential.to_owned(),
        read_only,
        expires_at,
    })
}
