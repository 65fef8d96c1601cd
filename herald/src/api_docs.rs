//! `/docs`: the API reference, rendered in the browser from `/openapi.json` by a page,
//! script and style sheet compiled into the binary, so that it works offline and needs no
//! asset from elsewhere. Served by every service, like the document itself, under the
//! dashboard's strict Content-Security-Policy (no framing, only its own script and style).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_query::dashboard::security_headers;

const INDEX_HTML: &str = include_str!("../docs-page/index.html");
const DOCS_JS: &str = include_str!("../docs-page/docs.js");
const DOCS_CSS: &str = include_str!("../docs-page/docs.css");

pub fn routes() -> Router {
    Router::new()
        .route(
            "/docs",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/docs/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/docs/docs.js",
            get(|| async { page("text/javascript; charset=utf-8", DOCS_JS) }),
        )
        .route(
            "/docs/docs.css",
            get(|| async { page("text/css; charset=utf-8", DOCS_CSS) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut headers = security_headers(&[]);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new Herald version is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (headers, body).into_response()
}
