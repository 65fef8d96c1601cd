//! The OpenAPI schemas of the command routes' text fields, stating the rules of
//! `validation` so that a client knows beforehand what is accepted; the tests below hold
//! each pattern to its rule both ways.

use crate::validation::{
    MAX_DESCRIPTION_LENGTH, MAX_IDEMPOTENCY_KEY_LENGTH, MAX_TENANT_NAME_LENGTH, MAX_URL_LENGTH,
};
use herald_http::field_schemas::FREE_TEXT_PATTERN;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// An RFC 3986 URI: http or https; a host name (whose last label starts with a letter: URL
/// parsers take a number there for an IPv4 address) or a dotted IPv4 address; an optional
/// port; then path, query and fragment. `validation::endpoint_url` applies it, so that the
/// document and the service agree exactly, but for one thing no pattern can say: a label
/// starting with `xn--` is an internationalized name's ASCII form and must be valid punycode
/// (the description says so). (IPv6 literals are left out: name the host.)
pub const ENDPOINT_URL_PATTERN: &str = "^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[0-5][0-9]{4}|[0-9]{1,4}))?(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*)?(?:\\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$";

/// Visible ASCII and inner spaces: what an HTTP header carries intact (servers strip
/// leading and trailing spaces), without the control characters a key may not hold.
pub const IDEMPOTENCY_KEY_HEADER_PATTERN: &str = "^[!-~](?:[ -~]{0,254}[!-~])?$";

/// No control characters at all.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";

fn text(max_length: usize, pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max_length))
        .pattern(Some(pattern))
        .description(Some(description))
}

/// An endpoint's URL.
pub struct EndpointUrl;

impl PartialSchema for EndpointUrl {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_URL_LENGTH,
            ENDPOINT_URL_PATTERN,
            "Where events are POSTed: http or https. Refused when the host is, or resolves \
             to, an address receivers may not use (loopback, private, link-local, ...) unless \
             the operator allows it; a host that does not resolve yet is accepted. A host \
             label starting with `xn--` must be valid punycode.",
        )
        .format(Some(SchemaFormat::Custom("uri".to_owned())))
        .examples([serde_json::json!("https://example.com/webhooks")])
        .into()
    }
}

impl ToSchema for EndpointUrl {}

/// A signing secret as written: `whsec_` and standard base64 of 24-64 bytes.
pub struct SigningSecretText;

impl PartialSchema for SigningSecretText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(herald_rules::signature::SECRET_PATTERN))
            .description(Some(
                "`whsec_` and standard base64 (padded) of 24-64 random bytes",
            ))
            .into()
    }
}

impl ToSchema for SigningSecretText {}

/// An endpoint's description.
pub struct Description;

impl PartialSchema for Description {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_DESCRIPTION_LENGTH,
            FREE_TEXT_PATTERN,
            "Free text without control characters other than tab and line breaks",
        )
        .into()
    }
}

impl ToSchema for Description {}

/// A tenant's name.
pub struct TenantName;

impl PartialSchema for TenantName {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_TENANT_NAME_LENGTH,
            "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$",
            "A name for operators (need not be unique): free text with at least one visible character",
        )
        .into()
    }
}

impl ToSchema for TenantName {}

/// An idempotency key in the body.
pub struct IdempotencyKey;

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_IDEMPOTENCY_KEY_LENGTH,
            IDEMPOTENCY_KEY_PATTERN,
            "Repeat-safe key, kept at least 24 h; same as the `Idempotency-Key` header, and \
             equal to it when both are sent",
        )
        .min_length(Some(1))
        .into()
    }
}

impl ToSchema for IdempotencyKey {}

/// An idempotency key in the `Idempotency-Key` header.
pub struct IdempotencyKeyHeader;

impl PartialSchema for IdempotencyKeyHeader {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_IDEMPOTENCY_KEY_LENGTH,
            IDEMPOTENCY_KEY_HEADER_PATTERN,
            "Repeat-safe key, kept at least 24 h: printable ASCII",
        )
        .min_length(Some(1))
        .into()
    }
}

impl ToSchema for IdempotencyKeyHeader {}

/// An endpoint's custom headers as requested: names (RFC 9110 tokens, not Herald's own) to
/// values. In a PATCH a `null` value removes that header.
pub struct CustomHeaders;

/// [`CustomHeaders`] in a PATCH, where a value may be `null`.
pub struct CustomHeadersChange;

fn headers_schema(nullable_values: bool) -> RefOr<Schema> {
    let value: RefOr<Schema> = if nullable_values {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name("CustomHeaderValue"))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    } else {
        utoipa::openapi::Ref::from_schema_name("CustomHeaderValue").into()
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::endpoint_headers::NAME_PATTERN)),
        ))
        .additional_properties(Some(value))
        .max_properties(Some(crate::endpoint_headers::MAX_HEADERS))
        .description(Some(
            "Header names are RFC 9110 tokens; `webhook-*`, `content-*`, `host`, `user-agent`, \
             `traceparent` and connection headers are Herald's and refused. Values are stored \
             encrypted and never shown again.",
        ))
        .into()
}

impl PartialSchema for CustomHeaders {
    fn schema() -> RefOr<Schema> {
        headers_schema(false)
    }
}

impl ToSchema for CustomHeaders {}

impl PartialSchema for CustomHeadersChange {
    fn schema() -> RefOr<Schema> {
        headers_schema(true)
    }
}

impl ToSchema for CustomHeadersChange {}

/// A custom header's value.
pub struct CustomHeaderValue;

/// Printable ASCII (tab allowed inside), no leading or trailing blank.
pub const HEADER_VALUE_PATTERN: &str = "^[!-~](?:[ -~\\t]*[!-~])?$";

impl PartialSchema for CustomHeaderValue {
    fn schema() -> RefOr<Schema> {
        text(
            crate::endpoint_headers::MAX_VALUE_BYTES,
            HEADER_VALUE_PATTERN,
            "Printable ASCII, without leading or trailing blanks",
        )
        .min_length(Some(1))
        .into()
    }
}

impl ToSchema for CustomHeaderValue {}

/// How deliveries are signed.
pub struct SignatureSchemeName;

impl PartialSchema for SignatureSchemeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["v1", "v1a"]))
            .description(Some(
                "`v1`: HMAC-SHA256 with a shared `whsec_` secret. `v1a`: ed25519, verified \
                 with the endpoint's `whpk_` public key.",
            ))
            .into()
    }
}

impl ToSchema for SignatureSchemeName {}

/// An API key's scope.
pub struct ApiKeyScopeName;

impl PartialSchema for ApiKeyScopeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(
                herald_schemas::ApiKeyScope::ALL.map(herald_schemas::ApiKeyScope::as_str),
            ))
            .description(Some("`read`: every GET. `write`: every other request."))
            .into()
    }
}

impl ToSchema for ApiKeyScopeName {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation;
    use herald_rules::TargetGuard;
    use proptest::prelude::*;

    fn generated(pattern: &str) -> impl Strategy<Value = String> {
        let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(unanchored).expect("pattern")
    }

    /// Whether the URL's host has a label in the ASCII form of an internationalized name.
    fn has_ace_label(url: &str) -> bool {
        let host = url.split_once("://").map_or("", |(_, rest)| {
            rest.split([':', '/', '?', '#']).next().unwrap_or("")
        });
        host.split('.').any(|label| {
            label
                .get(..4)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("xn--"))
        })
    }

    #[tokio::test]
    async fn an_invalid_punycode_label_is_refused_and_a_valid_one_accepted() {
        let guard = everything_allowed();
        let refused = validation::endpoint_url("HTTP://xn--aA0.A", &guard).await;
        assert!(
            matches!(
                refused,
                Err(validation::FieldError::NotAUrl(url::ParseError::IdnaError))
            ),
            "{refused:?}"
        );
        assert!(has_ace_label("HTTP://xn--aA0.A"));
        // bücher.example, in its ASCII form: accepted (it need not resolve).
        let accepted = validation::endpoint_url("https://xn--bcher-kva.example/hook", &guard).await;
        assert!(accepted.is_ok(), "{accepted:?}");
        assert!(!has_ace_label("https://example.com/xn--a"));
    }

    fn everything_allowed() -> TargetGuard {
        TargetGuard::from_list("0.0.0.0/0,::/0").expect("cidrs")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every URL of the documented form is accepted where every target is allowed, but
        /// for hosts with an `xn--` label that is not valid punycode, which the description
        /// excludes in words.
        #[test]
        fn documented_urls_are_accepted(url in generated(ENDPOINT_URL_PATTERN)) {
            prop_assume!(url.len() <= MAX_URL_LENGTH);
            let guard = everything_allowed();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let result = runtime.block_on(validation::endpoint_url(&url, &guard));
            let not_punycode = matches!(result, Err(validation::FieldError::NotAUrl(url::ParseError::IdnaError)))
                && has_ace_label(&url);
            prop_assert!(result.is_ok() || not_punycode, "{:?}: {:?}", url, result);
        }

        #[test]
        fn documented_idempotency_keys_are_accepted(key in generated(IDEMPOTENCY_KEY_PATTERN)) {
            prop_assume!(key.chars().count() <= MAX_IDEMPOTENCY_KEY_LENGTH);
            prop_assert!(validation::idempotency_key(&key).is_ok(), "{:?}", key);
        }

        #[test]
        fn documented_header_keys_are_accepted(key in generated(IDEMPOTENCY_KEY_HEADER_PATTERN)) {
            let value = axum::http::HeaderValue::from_str(&key).expect("a header value");
            let text = value.to_str().expect("visible ASCII");
            prop_assert!(validation::idempotency_key(text).is_ok(), "{:?}", key);
        }

        #[test]
        fn documented_free_text_is_accepted(text in generated(FREE_TEXT_PATTERN)) {
            prop_assume!(text.chars().count() <= MAX_DESCRIPTION_LENGTH);
            prop_assert!(validation::free_text(&text, MAX_DESCRIPTION_LENGTH).is_ok(), "{:?}", text);
        }

        /// And what the rules refuse, the patterns refuse too.
        #[test]
        fn refused_text_does_not_fit_the_patterns(text in any::<String>()) {
            let free_text = regex::Regex::new(FREE_TEXT_PATTERN).expect("pattern");
            if validation::free_text(&text, usize::MAX).is_err() {
                prop_assert!(!free_text.is_match(&text), "{:?}", text);
            }
            let key = regex::Regex::new(IDEMPOTENCY_KEY_PATTERN).expect("pattern");
            if validation::idempotency_key(&text).is_err() && !text.is_empty() && text.chars().count() <= MAX_IDEMPOTENCY_KEY_LENGTH {
                prop_assert!(!key.is_match(&text), "{:?}", text);
            }
        }
    }
}
