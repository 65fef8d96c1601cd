//! Field rules shared by the command routes. Each returns the user-facing message.

use herald_rules::TargetGuard;
use std::net::IpAddr;

pub const MAX_EVENT_TYPE_LENGTH: usize = 128;
pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_DESCRIPTION_LENGTH: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 256;
pub const MAX_EVENT_TYPES_PER_ENDPOINT: usize = 256;
pub const MAX_TENANT_NAME_LENGTH: usize = 256;

pub fn event_type(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_EVENT_TYPE_LENGTH {
        return Err(format!("must be 1-{MAX_EVENT_TYPE_LENGTH} characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
    {
        return Err("may contain only letters, digits and `.` `_` `-` `:`".to_owned());
    }
    Ok(())
}

pub fn idempotency_key(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY_LENGTH {
        return Err(format!("must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// Checks the URL's form and that every address it resolves to now is an allowed target.
/// Delivery checks again at connect time, so a later DNS change cannot get around this.
pub async fn endpoint_url(value: &str, guard: &TargetGuard) -> Result<url::Url, String> {
    if value.len() > MAX_URL_LENGTH {
        return Err(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    let url = url::Url::parse(value).map_err(|error| format!("is not a valid URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; use the signature to authenticate".to_owned());
    }
    let host = match url.host() {
        Some(url::Host::Domain(domain)) => domain.to_owned(),
        Some(url::Host::Ipv4(v4)) => return check_addresses([IpAddr::V4(v4)], guard).map(|()| url),
        Some(url::Host::Ipv6(v6)) => return check_addresses([IpAddr::V6(v6)], guard).map(|()| url),
        None => return Err("must have a host".to_owned()),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| format!("host `{host}` does not resolve"))?
        .map(|address| address.ip())
        .collect();
    check_addresses(addresses, guard).map(|()| url)
}

fn check_addresses(
    addresses: impl IntoIterator<Item = IpAddr>,
    guard: &TargetGuard,
) -> Result<(), String> {
    for address in addresses {
        guard.check(address).map_err(|refused| {
            format!(
                "resolves to {refused}; ask the operator to add it to HERALD_ALLOWED_TARGET_CIDRS if this is intended"
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        assert!(endpoint_url("http://169.254.169.254/latest", &loopback)
            .await
            .is_err());
        assert!(endpoint_url("http://127.0.0.1:9/hook", &loopback)
            .await
            .is_ok());
        assert!(endpoint_url("not a url", &loopback).await.is_err());
    }
}
