//! Custom static headers an endpoint's deliveries carry (an auth header the receiver
//! expects, say): what names and values a tenant may set. Herald's own headers, and those
//! that would change how the request is framed or routed, cannot be set.

/// Headers per endpoint.
pub const MAX_HEADERS: usize = 20;
pub const MAX_NAME_LENGTH: usize = 64;
pub const MAX_VALUE_BYTES: usize = 4096;

/// Names Herald sets itself or that belong to the connection, compared case-insensitively;
/// every `webhook-*` name is Herald's too.
const RESERVED: [&str; 16] = [
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
    "traceparent",
    "tracestate",
    "proxy-authorization",
    "proxy-connection",
];

/// A header name's characters and length, for the OpenAPI document (RFC 9110 `token`).
pub const NAME_PATTERN: &str = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidHeader {
    #[error("a header name must be 1-{MAX_NAME_LENGTH} characters of letters, digits and !#$%&'*+-.^_`|~")]
    Name,
    #[error("`{0}` is set by Herald or by the connection and cannot be a custom header")]
    Reserved(String),
    #[error("a header value must be 1-{MAX_VALUE_BYTES} bytes of printable ASCII, without leading or trailing spaces")]
    Value,
    #[error("at most {MAX_HEADERS} custom headers")]
    TooMany,
}

pub fn check_name(name: &str) -> Result<(), InvalidHeader> {
    let token_char = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    if name.is_empty() || name.len() > MAX_NAME_LENGTH || !name.bytes().all(token_char) {
        return Err(InvalidHeader::Name);
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("webhook-") || RESERVED.contains(&lower.as_str()) {
        return Err(InvalidHeader::Reserved(name.to_owned()));
    }
    Ok(())
}

pub fn check_value(value: &str) -> Result<(), InvalidHeader> {
    let printable = |byte: u8| (0x20..=0x7e).contains(&byte) || byte == b'\t';
    let trimmed = value.trim_matches([' ', '\t']);
    if value.is_empty()
        || value.len() > MAX_VALUE_BYTES
        || trimmed.len() != value.len()
        || !value.bytes().all(printable)
    {
        return Err(InvalidHeader::Value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    #[test]
    fn herald_s_own_headers_are_reserved() {
        for name in [
            "Webhook-Signature",
            "webhook-id",
            "Content-Type",
            "HOST",
            "traceparent",
        ] {
            assert!(
                matches!(check_name(name), Err(InvalidHeader::Reserved(_))),
                "{name}"
            );
        }
        assert_eq!(check_name("Authorization"), Ok(()));
        assert_eq!(check_name("X-Api-Key"), Ok(()));
        assert_eq!(check_name("bad name"), Err(InvalidHeader::Name));
        assert_eq!(check_value("Bearer abc"), Ok(()));
        assert_eq!(check_value(" padded"), Err(InvalidHeader::Value));
        assert_eq!(check_value("line\r\nbreak"), Err(InvalidHeader::Value));
        assert_eq!(check_value(""), Err(InvalidHeader::Value));
    }

    proptest! {
        /// What is accepted is sent as is: the HTTP client takes every accepted header.
        #[test]
        fn accepted_headers_are_valid_http(name in ".{0,70}", value in ".{0,100}") {
            if check_name(&name).is_ok() {
                prop_assert!(HeaderName::from_bytes(name.as_bytes()).is_ok());
                prop_assert!(regex::Regex::new(NAME_PATTERN).expect("pattern").is_match(&name));
            }
            if check_value(&value).is_ok() {
                prop_assert!(HeaderValue::from_str(&value).is_ok());
            }
        }

        /// The document's value pattern and the check agree both ways.
        #[test]
        fn the_documented_value_form_is_what_is_checked(value in "[\\x00-\\x7f]{0,40}") {
            let pattern = regex::Regex::new(crate::field_schemas::HEADER_VALUE_PATTERN).expect("pattern");
            prop_assert_eq!(pattern.is_match(&value), check_value(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn the_documented_name_form_is_what_is_checked(name in "[!#$%&'*+\\-.^_`|~0-9A-Za-z]{1,64}") {
            let lower = name.to_ascii_lowercase();
            let reserved = lower.starts_with("webhook-") || RESERVED.contains(&lower.as_str());
            prop_assert_eq!(check_name(&name).is_ok(), !reserved);
        }
    }
}
