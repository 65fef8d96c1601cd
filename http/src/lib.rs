//! The HTTP edge shared by the `command` and `query` services: RFC 9457 problem responses,
//! tenant authentication by API key, JSON bodies whose errors name the offending field, and
//! the request span, and W3C trace context with the spans Herald exports.

pub mod admin;
pub mod api_key;
pub mod field_schemas;
pub mod json_body;
pub mod problem;
pub mod query_string;
pub mod telemetry;
pub mod tenant_auth;
pub mod trace_context;
pub mod whole_number;

pub use api_key::{ApiKey, ApiKeyHash};
pub use json_body::ApiJson;
pub use problem::{ApiError, ProblemDetails};
pub use query_string::ApiQuery;
pub use telemetry::request_span;
pub use tenant_auth::{
    ApiKeyCaller, AuthenticatedTenant, Caller, Credential, Scopes, TenantAuthenticator,
};
