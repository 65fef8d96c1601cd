//! The dashboard: one page and its script and style sheet, compiled into the binary so that
//! Herald serves it with nothing fetched from elsewhere and no Node at run time. The page
//! talks to the same `/v1` API as every client, with the API key the user pastes (kept in
//! the browser session) or the token of a portal link (`/portal/{token}`).
//!
//! Every answer carries a strict Content-Security-Policy: the page runs only its own script
//! and style, talks only to this origin, and may be framed only by the origins a portal
//! session names (by none for `/dashboard`).

use crate::state::QueryState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_http::tenant_auth::PORTAL_TOKEN_PREFIX;
use herald_http::ApiKeyHash;

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");

pub fn routes() -> Router<QueryState> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/app.css", get(style))
        .route("/dashboard/{*page}", get(index))
        .route("/portal/{token}", get(portal))
}

async fn index() -> Response {
    page(&[])
}

/// A portal link opens the same page; the token in the path is what the script sends as its
/// bearer token. An unknown or expired token still gets the page, which then says so.
async fn portal(State(state): State<QueryState>, Path(token): Path<String>) -> Response {
    let frame_ancestors = if token.starts_with(PORTAL_TOKEN_PREFIX) {
        match herald_store::portal_sessions::find_unexpired(&state.pool, &ApiKeyHash::of(&token).0)
            .await
        {
            Ok(Some(session)) => session.frame_ancestors,
            Ok(None) => Vec::new(),
            Err(error) => return herald_http::ApiError::internal(&error).into_response(),
        }
    } else {
        Vec::new()
    };
    page(&frame_ancestors)
}

fn page(frame_ancestors: &[String]) -> Response {
    let mut headers = security_headers(frame_ancestors);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page of a portal link has the token in its address: keep it out of caches.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (headers, INDEX_HTML).into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut headers = security_headers(&[]);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new Herald version is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (headers, body).into_response()
}

/// The origins come from `portal::frame_origin`, which admits scheme, host and port only, so
/// none can end the directive or add another.
pub fn security_headers(frame_ancestors: &[String]) -> HeaderMap {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&policy).unwrap_or_else(|_| {
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")
        }),
    );
    if frame_ancestors.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
}
