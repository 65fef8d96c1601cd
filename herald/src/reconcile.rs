//! `herald reconcile [--since <time>]`: compares the log with both read models and prints
//! every difference (see `herald_projector::reconcile`).

use crate::stack::Stack;
use chrono::{DateTime, Utc};
use herald_projector::reconcile::{Reconciler, Reconciliation};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error(
    "`--since {0}` is neither an RFC 3339 time nor a duration back from now like 90m, 24h or 7d"
)]
pub struct InvalidSince(String);

/// What `--since` accepts: an RFC 3339 time, or a duration back from now (`90m`, `24h`, `7d`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidSince> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let invalid = || InvalidSince(text.to_owned());
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: u32 = number.parse().map_err(|_| invalid())?;
    let amount = i64::from(amount);
    let back = match unit {
        "s" => chrono::Duration::seconds(amount),
        "m" => chrono::Duration::minutes(amount),
        "h" => chrono::Duration::hours(amount),
        "d" => chrono::Duration::days(amount),
        _ => return Err(invalid()),
    };
    Ok(now - back)
}

pub async fn reconcile(
    stack: &Stack,
    since: DateTime<Utc>,
) -> Result<Reconciliation, herald_projector::ProjectorError> {
    let log_stream = stack
        .jetstream
        .get_stream(stack.namespace.log_stream())
        .await
        .map_err(|error| herald_projector::ProjectorError::Log {
            context: "cannot open the log stream",
            source: Box::new(error),
        })?;
    Reconciler {
        log_stream,
        namespace: stack.namespace.clone(),
        pool: stack.pool.clone(),
        clickhouse: stack.clickhouse.clone(),
        catch_up: Duration::from_secs(60),
    }
    .run(since)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_or_a_duration_back_from_now() {
        let now = Utc::now();
        assert_eq!(
            parse_since("24h", now).ok(),
            Some(now - chrono::Duration::hours(24))
        );
        assert_eq!(
            parse_since("90m", now).ok(),
            Some(now - chrono::Duration::minutes(90))
        );
        assert_eq!(
            parse_since("7d", now).ok(),
            Some(now - chrono::Duration::days(7))
        );
        let at = parse_since("2026-11-26T10:00:00Z", now).ok();
        assert_eq!(
            at.map(|at| at.to_rfc3339()),
            Some("2026-11-26T10:00:00+00:00".to_owned())
        );
        for wrong in ["", "h", "-3h", "24x", "yesterday"] {
            assert!(parse_since(wrong, now).is_err(), "{wrong}");
        }
    }
}
