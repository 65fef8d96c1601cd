//! An endpoint's delivery objective as requested (`slo` on create and change): at least
//! `success_rate` of its attempts succeed over any `window_days`. The query service watches
//! how fast its error budget burns (ADR 0022).

use herald_http::ApiError;
use herald_schemas::EndpointSlo;
use serde::Deserialize;
use utoipa::ToSchema;

/// Objectives from one nine to four: a budget smaller than 0.01 % of the attempts is noise.
const LOWEST_SUCCESS_RATE: f64 = 0.5;
const HIGHEST_SUCCESS_RATE: f64 = 0.9999;
/// Up to 90 days, which the hourly rollups always hold.
const MAX_WINDOW_DAYS: u32 = 90;
const DEFAULT_WINDOW_DAYS: u32 = 30;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SloRequest {
    /// The share of attempts that must succeed, e.g. `0.99` (0.5 to 0.9999).
    #[schema(minimum = 0.5, maximum = 0.9999)]
    pub success_rate: f64,
    /// The window the objective holds over, in days (default 30).
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1, maximum = 90)]
    pub window_days: Option<u32>,
}

pub(crate) fn validate_slo(request: Option<SloRequest>) -> Result<Option<EndpointSlo>, ApiError> {
    let Some(request) = request else {
        return Ok(None);
    };
    if !(LOWEST_SUCCESS_RATE..=HIGHEST_SUCCESS_RATE).contains(&request.success_rate) {
        return Err(ApiError::invalid(
            "slo.success_rate",
            format!("must be {LOWEST_SUCCESS_RATE} to {HIGHEST_SUCCESS_RATE}"),
        ));
    }
    let window_days = request.window_days.unwrap_or(DEFAULT_WINDOW_DAYS);
    if !(1..=MAX_WINDOW_DAYS).contains(&window_days) {
        return Err(ApiError::invalid(
            "slo.window_days",
            format!("must be 1-{MAX_WINDOW_DAYS} days"),
        ));
    }
    Ok(Some(EndpointSlo {
        success_rate: request.success_rate,
        window_days,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(success_rate: f64, window_days: Option<u32>) -> Result<Option<EndpointSlo>, ApiError> {
        validate_slo(Some(SloRequest {
            success_rate,
            window_days,
        }))
    }

    #[test]
    fn takes_the_documented_range_and_defaults_to_thirty_days() {
        assert_eq!(
            slo(0.99, None).expect("valid"),
            Some(EndpointSlo {
                success_rate: 0.99,
                window_days: 30
            })
        );
        assert!(slo(0.5, Some(1)).is_ok());
        assert!(slo(0.9999, Some(90)).is_ok());
        for (rate, days) in [
            (1.0, None),
            (0.49, None),
            (f64::NAN, None),
            (0.99, Some(0)),
            (0.99, Some(91)),
        ] {
            assert!(slo(rate, days).is_err(), "{rate} {days:?}");
        }
        assert_eq!(validate_slo(None).expect("none"), None);
    }
}
