//! Turns what came back from a receiver (a status, or a transport error) into an
//! [`AttemptResult`] the retry policy can decide on.
//!
//! | result                                   | class            | retried |
//! |------------------------------------------|------------------|---------|
//! | 2xx                                      | —                | done    |
//! | 3xx (redirects are never followed)       | `http_3xx`       | no      |
//! | 408, 409, 425, 429                       | `http_4xx`/`429` | yes     |
//! | other 4xx                                | `http_4xx`       | no      |
//! | 5xx                                      | `http_5xx`       | yes     |
//! | timeout, connection error, DNS failure   | as named         | yes     |
//! | target refused by the SSRF guard         | `target_refused` | no      |

use crate::retry_policy::AttemptResult;
use crate::target_guard::TargetRefused;
use chrono::{DateTime, Utc};
use herald_schemas::ErrorClass;
use std::error::Error as StdError;
use std::time::Duration;

/// The host name of the endpoint did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {reason}")]
pub struct ResolveFailed {
    pub host: String,
    pub reason: String,
}

pub fn classify_status(status: u16, retry_after: Option<Duration>) -> AttemptResult {
    match status {
        200..=299 => AttemptResult::Succeeded,
        300..=399 => AttemptResult::Final {
            class: ErrorClass::Http3xx,
        },
        429 => AttemptResult::Retryable {
            class: ErrorClass::Http429,
            retry_after,
        },
        408 | 409 | 425 => AttemptResult::Retryable {
            class: ErrorClass::Http4xx,
            retry_after,
        },
        400..=499 => AttemptResult::Final {
            class: ErrorClass::Http4xx,
        },
        500..=599 => AttemptResult::Retryable {
            class: ErrorClass::Http5xx,
            retry_after,
        },
        _ => AttemptResult::Retryable {
            class: ErrorClass::HttpInvalid,
            retry_after: None,
        },
    }
}

/// Classifies a transport failure by walking its chain of causes.
pub fn classify_transport_error(error: &reqwest::Error) -> (AttemptResult, String) {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<TargetRefused>() {
            return (
                AttemptResult::Final {
                    class: ErrorClass::TargetRefused,
                },
                refused.to_string(),
            );
        }
        if let Some(failed) = current.downcast_ref::<ResolveFailed>() {
            return (retryable(ErrorClass::Dns), failed.to_string());
        }
        cause = current.source();
    }
    let class = if error.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Connection
    };
    (retryable(class), describe(error))
}

fn retryable(class: ErrorClass) -> AttemptResult {
    AttemptResult::Retryable {
        class,
        retry_after: None,
    }
}

/// The innermost cause is the informative one ("connection refused"), but reqwest's own
/// text includes the URL, which may carry a token in its query: keep only the causes.
fn describe(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = error.source();
    while let Some(current) = cause {
        parts.push(current.to_string());
        cause = current.source();
    }
    if parts.is_empty() {
        if error.is_timeout() {
            "request timed out".to_owned()
        } else {
            "request failed".to_owned()
        }
    } else {
        parts.join(": ")
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        assert_eq!(classify_status(204, None), AttemptResult::Succeeded);
        for final_status in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(
                    classify_status(final_status, None),
                    AttemptResult::Final { .. }
                ),
                "{final_status}"
            );
        }
        for retried in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify_status(retried, None),
                    AttemptResult::Retryable { .. }
                ),
                "{retried}"
            );
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .expect("date")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
