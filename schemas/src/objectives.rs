//! Delivery objectives: what an endpoint promises (`slo`, part of its configuration) and the
//! fact that its error budget is burning too fast (`endpoint.slo_burning.v1`).

use crate::ids::{EndpointId, TenantId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A delivery objective: at least `success_rate` of the attempts to an endpoint (Herald's own
/// `herald.…` events left out) succeed over any `window_days`. Its error budget is the
/// failures that allows; Herald watches how fast it burns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSlo {
    pub success_rate: f64,
    pub window_days: u32,
}

/// How fast an endpoint's error budget burned when an alert fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SloAlert {
    /// Over 1 h and 5 min, at 14.4 times the sustainable rate or more: 2 % of a 30-day
    /// budget gone in an hour.
    Fast,
    /// Over 6 h and 30 min, at 6 times the sustainable rate or more: 5 % of a 30-day budget
    /// gone in six hours.
    Slow,
}

impl SloAlert {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Slow => "slow",
        }
    }
}

/// An endpoint's error budget started burning faster than its objective allows (a
/// multi-window burn-rate alert fired, or a slow one became fast). Written by the query
/// service's objective watcher; announced as `herald.endpoint.slo_burn`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct EndpointSloBurning {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub alert: SloAlert,
    pub objective: EndpointSlo,
    /// Failure rate over the alert's long window (1 h or 6 h) divided by the failure rate
    /// the objective allows.
    pub burn_rate_long: f64,
    /// The same over its short window (5 min or 30 min).
    pub burn_rate_short: f64,
    /// The share of the error budget over `objective.window_days` still unspent (negative
    /// once overspent).
    pub budget_remaining: f64,
    pub detected_at: DateTime<Utc>,
}
