//! Field rules shared by the command routes. Each refuses a value with a [`FieldError`], whose
//! message is what the API tells the caller about that field.

use herald_rules::target_guard::TargetRefused;
use herald_rules::TargetGuard;
use std::net::IpAddr;

pub const MAX_EVENT_TYPE_LENGTH: usize = 128;
pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_DESCRIPTION_LENGTH: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 256;
pub const MAX_EVENT_TYPES_PER_ENDPOINT: usize = 256;
pub const MAX_TENANT_NAME_LENGTH: usize = 256;

/// How long endpoint creation waits for the URL's host to resolve before accepting it
/// unchecked (delivery checks at connect time anyway).
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a field's value was refused. The message is what the caller is told about the field.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("must be 1-{max} characters")]
    Length { max: usize },
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may contain only letters, digits and `.` `_` `-` `:`")]
    EventTypeCharacters,
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("is not a valid URL: {0}")]
    NotAUrl(#[from] url::ParseError),
    #[error("must use http or https")]
    Scheme,
    #[error("must not contain credentials; use the signature to authenticate")]
    Credentials,
    #[error("must have a host")]
    NoHost,
    #[error(
        "must be a host name or IPv4 address, an optional port, then path, query and fragment in RFC 3986 characters (percent-encode others)"
    )]
    UrlShape,
    #[error(
        "resolves to {0}; ask the operator to add it to HERALD_ALLOWED_TARGET_CIDRS if this is intended"
    )]
    RefusedTarget(#[source] TargetRefused),
}

pub fn event_type(value: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > MAX_EVENT_TYPE_LENGTH {
        return Err(FieldError::Length {
            max: MAX_EVENT_TYPE_LENGTH,
        });
    }
    if !herald_http::field_schemas::is_event_type(value) {
        return Err(FieldError::EventTypeCharacters);
    }
    Ok(())
}

/// Text people write (descriptions, names): at most `max` characters, and no control
/// characters but tab and line breaks (Postgres cannot store NUL; the others garble every
/// display).
pub fn free_text(value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::TooLong { max });
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(FieldError::ControlCharacters);
    }
    Ok(())
}

pub fn idempotency_key(value: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.chars().count() > MAX_IDEMPOTENCY_KEY_LENGTH {
        return Err(FieldError::Length {
            max: MAX_IDEMPOTENCY_KEY_LENGTH,
        });
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(FieldError::ControlCharacters);
    }
    Ok(())
}

/// Checks the URL's form and that every address it resolves to now is an allowed target.
/// A host that does not resolve (yet) is accepted: endpoints are often registered before
/// their DNS exists, or from a network that resolves differently than the receivers'. The
/// guard is what keeps deliveries off internal addresses, and delivery checks every
/// address again at connect time, so neither a later DNS change nor this leniency gets
/// around it.
pub async fn endpoint_url(value: &str, guard: &TargetGuard) -> Result<url::Url, FieldError> {
    if value.chars().count() > MAX_URL_LENGTH {
        return Err(FieldError::TooLong {
            max: MAX_URL_LENGTH,
        });
    }
    let url = url::Url::parse(value)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::Credentials);
    }
    if url.host().is_some() && !endpoint_url_shape().is_match(value) {
        return Err(FieldError::UrlShape);
    }
    let host = match url.host() {
        Some(url::Host::Domain(domain)) => domain.to_owned(),
        Some(url::Host::Ipv4(v4)) => return check_addresses([IpAddr::V4(v4)], guard).map(|()| url),
        Some(url::Host::Ipv6(v6)) => return check_addresses([IpAddr::V6(v6)], guard).map(|()| url),
        None => return Err(FieldError::NoHost),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let addresses: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => addresses.map(|address| address.ip()).collect(),
        Ok(Err(_)) | Err(_) => Vec::new(),
    };
    check_addresses(addresses, guard).map(|()| url)
}

fn endpoint_url_shape() -> &'static regex::Regex {
    static SHAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(crate::field_schemas::ENDPOINT_URL_PATTERN)
            .expect("ENDPOINT_URL_PATTERN is a valid regex")
    });
    &SHAPE
}

fn check_addresses(
    addresses: impl IntoIterator<Item = IpAddr>,
    guard: &TargetGuard,
) -> Result<(), FieldError> {
    for address in addresses {
        guard.check(address).map_err(FieldError::RefusedTarget)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_text_keeps_line_breaks_and_refuses_other_control_characters() {
        assert!(super::free_text("two\nlines\tand a tab", 100).is_ok());
        assert!(super::free_text("nul \u{0}", 100).is_err());
        assert!(super::free_text("escape \u{1b}[31m", 100).is_err());
        assert!(super::free_text(&"x".repeat(101), 100).is_err());
    }

    use super::*;

    #[test]
    fn event_types() {
        assert!(event_type("invoice.paid").is_ok());
        assert!(event_type("a:b-c_d.1").is_ok());
        assert!(event_type("").is_err());
        assert!(event_type("has space").is_err());
        assert!(event_type(&"x".repeat(MAX_EVENT_TYPE_LENGTH + 1)).is_err());
    }

    #[tokio::test]
    async fn urls() {
        let strict = TargetGuard::default();
        let loopback = TargetGuard::from_list("127.0.0.0/8").expect("cidr");
        assert!(endpoint_url("ftp://example.com/x", &strict).await.is_err());
        assert!(endpoint_url("http://user:pw@127.0.0.1/", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("http://127.0.0.1:9/hook", &strict)
            .await
            .is_err());
        assert!(endpoint_url("http://[::1]:9/hook", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("https://a.example.org*/", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("https://a.example.org/é", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("http://169.254.169.254/latest", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("http://127.0.0.1:9/hook", &loopback)
            .await
            .is_ok());
        assert!(endpoint_url("not a url", &loopback).await.is_err());
        // Not resolvable (`.invalid` never is, RFC 6761): accepted, delivery checks later.
        assert!(endpoint_url("https://receiver.invalid/hook", &strict)
            .await
            .is_ok());
        // Resolves to loopback: refused unless the operator allows it.
        assert!(endpoint_url("http://localhost:9/hook", &strict)
            .await
            .is_err());
    }

    /// The messages are part of the API (problem+json `detail`); they must not drift.
    #[tokio::test]
    async fn messages_are_those_the_api_has_always_given() {
        let message = |result: Result<(), FieldError>| result.expect_err("refused").to_string();
        assert_eq!(message(event_type("")), "must be 1-128 characters");
        assert_eq!(
            message(event_type("has space")),
            "may contain only letters, digits and `.` `_` `-` `:`"
        );
        assert_eq!(message(idempotency_key("")), "must be 1-256 characters");
        assert_eq!(
            message(idempotency_key("a\u{7}b")),
            "must not contain control characters"
        );
        let strict = TargetGuard::default();
        let url_message =
            |result: Result<url::Url, FieldError>| result.expect_err("refused").to_string();
        assert_eq!(
            url_message(endpoint_url(&"x".repeat(MAX_URL_LENGTH + 1), &strict).await),
            "must be at most 2048 characters"
        );
        assert_eq!(
            url_message(endpoint_url("not a url", &strict).await),
            "is not a valid URL: relative URL without a base"
        );
        assert_eq!(
            url_message(endpoint_url("ftp://example.com/x", &strict).await),
            "must use http or https"
        );
        assert_eq!(
            url_message(endpoint_url("http://user:pw@example.com/", &strict).await),
            "must not contain credentials; use the signature to authenticate"
        );
        assert_eq!(
            url_message(endpoint_url("http://127.0.0.1:9/hook", &strict).await),
            "resolves to 127.0.0.1 is a loopback address, which receivers may not use; \
             ask the operator to add it to HERALD_ALLOWED_TARGET_CIDRS if this is intended"
        );
    }
}
