//! `GET /v1/sli` and `GET /v1/sli/breakdown`: a tenant's delivery SLIs from the ClickHouse
//! rollups (docs/clickhouse.md): attempts, success rate, dead-letter rate, attempt and
//! end-to-end latency quantiles and error classes, as a time series or per endpoint or event
//! type. Quantiles are merged from the rollups' t-digest states over exactly the rows asked
//! for, never averaged.

use crate::params::parse_uuid;
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, ApiQuery, Caller};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use utoipa::{IntoParams, ToSchema};

/// Longest event type a filter may name (as at ingest).
/// Most rows a breakdown returns (the busiest first).
const MAX_BREAKDOWN_ROWS: u64 = 1000;

/// The error classes that made no request: latency quantiles are over the other attempts.
const UNSENT_CLASSES: &str =
    "('endpoint_unavailable', 'circuit_open', 'retry_budget', 'endpoint_busy', 'expired')";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "6h")]
    SixHours,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Minute,
    Hour,
}

impl Window {
    const ALL: [(&'static str, Window); 5] = [
        ("1h", Window::Hour),
        ("6h", Window::SixHours),
        ("24h", Window::Day),
        ("7d", Window::Week),
        ("30d", Window::Month),
    ];

    pub(crate) fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        let Some(value) = value else {
            return Ok(Window::Day);
        };
        Self::ALL
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, window)| *window)
            .ok_or_else(|| ApiError::invalid("window", "must be one of 1h, 6h, 24h, 7d, 30d"))
    }

    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, window)| *window == self)
            .map_or("24h", |(name, _)| name)
    }

    fn seconds(self) -> i64 {
        match self {
            Window::Hour => 3600,
            Window::SixHours => 6 * 3600,
            Window::Day => 24 * 3600,
            Window::Week => 7 * 24 * 3600,
            Window::Month => 30 * 24 * 3600,
        }
    }

    /// Minutes up to 6 hours (at most 360 points), hours beyond.
    pub(crate) fn default_granularity(self) -> Granularity {
        if self.seconds() <= 6 * 3600 {
            Granularity::Minute
        } else {
            Granularity::Hour
        }
    }
}

impl Granularity {
    fn parse(value: Option<&str>, window: Window) -> Result<Self, ApiError> {
        let granularity = match value {
            None => return Ok(window.default_granularity()),
            Some("minute") => Granularity::Minute,
            Some("hour") => Granularity::Hour,
            Some(_) => return Err(ApiError::invalid("granularity", "must be minute or hour")),
        };
        // 1 440 points at most, and per-minute rollups are kept only for their retention
        // days: a longer window is served by the hour, as the answer's `granularity` says.
        // Refusing instead would fail a dashboard that keeps its granularity while the user
        // widens the window.
        if granularity == Granularity::Minute && window.seconds() > 24 * 3600 {
            return Ok(Granularity::Hour);
        }
        Ok(granularity)
    }

    fn name(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3600,
        }
    }

    fn rollup(self) -> &'static str {
        match self {
            Granularity::Minute => "sli_minute_rollup",
            Granularity::Hour => "sli_hour_rollup",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SliQuery {
    /// How far back from now (default 24h). The first period starts at the beginning of the
    /// minute or hour the window starts in.
    #[param(value_type = Option<Window>)]
    pub window: Option<String>,
    /// `minute` or `hour`; default minute up to 6h, hour beyond. Windows over 24h are served
    /// by the hour whatever is asked; the answer's `granularity` says which was used.
    #[param(value_type = Option<Granularity>)]
    pub granularity: Option<String>,
    /// Only attempts to this endpoint.
    #[param(value_type = Option<uuid::Uuid>)]
    pub endpoint_id: Option<String>,
    /// Only attempts of events of this type.
    #[param(value_type = Option<herald_http::field_schemas::EventTypeName>)]
    pub event_type: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakdownBy {
    Endpoint,
    EventType,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BreakdownQuery {
    /// How far back from now (default 24h).
    #[param(value_type = Option<Window>)]
    pub window: Option<String>,
    /// `endpoint` (default) or `event_type`.
    #[param(value_type = Option<BreakdownBy>)]
    pub by: Option<String>,
}

/// Latency quantiles in milliseconds (t-digest estimates, rounded to 0.1); null when there
/// was nothing to measure.
#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Delivery SLIs over a set of attempts (docs/clickhouse.md defines each).
#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Sli {
    /// Attempt records, including those that ended a delivery without a request.
    pub attempts: u64,
    /// Attempts answered 2xx.
    pub successes: u64,
    /// `successes / attempts`; null without attempts.
    pub success_rate: Option<f64>,
    /// Attempts that ended their delivery (succeeded, failed, dead-lettered or expired).
    pub deliveries_concluded: u64,
    pub dead_letters: u64,
    /// `dead_letters / deliveries_concluded`; null when none concluded.
    pub dead_letter_rate: Option<f64>,
    /// Request start to response end, over attempts that made a request.
    pub attempt_latency_ms: Quantiles,
    /// Event accepted to delivered, over successful attempts.
    pub end_to_end_latency_ms: Quantiles,
    /// Failed attempts per error class (`http_5xx`, `timeout`, …); classes with none are left
    /// out.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SliPoint {
    pub period_start: DateTime<Utc>,
    #[serde(flatten)]
    pub sli: Sli,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SliSeries {
    #[schema(value_type = Window)]
    pub window: &'static str,
    #[schema(value_type = Granularity)]
    pub granularity: &'static str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Over the whole window.
    pub totals: Sli,
    /// One per period that had attempts, oldest first; periods without are left out.
    pub points: Vec<SliPoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SliGroup {
    /// The endpoint id or the event type.
    pub key: String,
    #[serde(flatten)]
    pub sli: Sli,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SliBreakdown {
    #[schema(value_type = Window)]
    pub window: &'static str,
    #[schema(value_type = BreakdownBy)]
    pub by: &'static str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Busiest first, at most 1000.
    pub data: Vec<SliGroup>,
}

/// The rows an SLI question covers; every value is bound, none is spliced into SQL.
pub(crate) struct SliFilter {
    pub tenant_id: Option<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub granularity: Granularity,
}

impl SliFilter {
    pub(crate) fn new(window: Window, granularity: Granularity, now: DateTime<Utc>) -> Self {
        let start = now.timestamp() - window.seconds();
        let start = start - start.rem_euclid(granularity.seconds());
        Self {
            tenant_id: None,
            since: DateTime::from_timestamp(start, 0).unwrap_or(now),
            until: now,
            endpoint_id: None,
            event_type: None,
            granularity,
        }
    }

    fn where_clause(&self) -> String {
        let mut clause =
            "period_start >= toDateTime(?) AND period_start < toDateTime(?)".to_owned();
        for (value, condition) in [
            (&self.tenant_id, " AND tenant_id = ?"),
            (&self.endpoint_id, " AND endpoint_id = ?"),
            (&self.event_type, " AND event_type = ?"),
        ] {
            if value.is_some() {
                clause.push_str(condition);
            }
        }
        clause
    }

    fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        query = query
            .bind(self.since.timestamp() as u32)
            .bind((self.until.timestamp() + 1) as u32);
        for value in [&self.tenant_id, &self.endpoint_id, &self.event_type]
            .into_iter()
            .flatten()
        {
            query = query.bind(value.as_str());
        }
        query
    }

    /// The measures per `key` (an SQL expression giving a String), and the error classes
    /// per key, read in two queries at once.
    pub(crate) async fn measure(
        &self,
        client: &clickhouse::Client,
        key: &str,
        limit: Option<u64>,
    ) -> Result<Vec<(String, Sli)>, ApiError> {
        let rollup = self.granularity.rollup();
        let filter = self.where_clause();
        let limit = limit
            .map(|limit| format!(" LIMIT {limit}"))
            .unwrap_or_default();
        let measures = format!(
            "SELECT {key} AS key, \
               countMerge(attempts_state) AS attempts, \
               countMergeIf(attempts_state, outcome = 'succeeded') AS successes, \
               countMergeIf(attempts_state, outcome IN ('succeeded', 'failed', 'dead_lettered', 'expired')) AS concluded, \
               countMergeIf(attempts_state, outcome = 'dead_lettered') AS dead_letters, \
               countMergeIf(attempts_state, error_class NOT IN {UNSENT_CLASSES}) AS requests, \
               arrayMap(q -> toFloat64(q), quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(attempt_latency_state)) AS attempt_latency, \
               arrayMap(q -> toFloat64(q), quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(end_to_end_latency_state)) AS end_to_end \
             FROM {rollup} WHERE {filter} GROUP BY key ORDER BY attempts DESC, key{limit}"
        );
        let errors = format!(
            "SELECT {key} AS key, error_class, countMerge(attempts_state) AS attempts \
             FROM {rollup} WHERE {filter} AND error_class != '' GROUP BY key, error_class"
        );
        let (measured, errors) = futures::try_join!(
            self.bind(client.query(&measures)).fetch_all::<MeasureRow>(),
            self.bind(client.query(&errors)).fetch_all::<ErrorRow>(),
        )
        .map_err(|error| {
            tracing::warn!(%error, "SLI query failed");
            ApiError::Unavailable(
                "the SLI store (ClickHouse) is unavailable; retry later".to_owned(),
            )
        })?;
        let mut errors_by_key: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        for row in errors {
            errors_by_key
                .entry(row.key)
                .or_default()
                .insert(row.error_class, row.attempts);
        }
        Ok(measured
            .into_iter()
            .map(|row| {
                let errors = errors_by_key.remove(&row.key).unwrap_or_default();
                (row.key.clone(), row.into_sli(errors))
            })
            .collect())
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MeasureRow {
    key: String,
    attempts: u64,
    successes: u64,
    concluded: u64,
    dead_letters: u64,
    requests: u64,
    attempt_latency: Vec<f64>,
    end_to_end: Vec<f64>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ErrorRow {
    key: String,
    error_class: String,
    attempts: u64,
}

impl MeasureRow {
    fn into_sli(self, errors: BTreeMap<String, u64>) -> Sli {
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        Sli {
            attempts: self.attempts,
            successes: self.successes,
            success_rate: ratio(self.successes, self.attempts),
            deliveries_concluded: self.concluded,
            dead_letters: self.dead_letters,
            dead_letter_rate: ratio(self.dead_letters, self.concluded),
            attempt_latency_ms: quantiles(&self.attempt_latency, self.requests),
            end_to_end_latency_ms: quantiles(&self.end_to_end, self.successes),
            errors,
        }
    }
}

/// The rollups keep the levels 0.5, 0.9, 0.95 and 0.99; an empty state merges to 0 or NaN
/// depending on the ClickHouse version, so `measured` (how many values went in) decides.
fn quantiles(levels: &[f64], measured: u64) -> Quantiles {
    let level = |index: usize| {
        levels
            .get(index)
            .filter(|value| measured > 0 && value.is_finite())
            .map(|value| (value * 10.0).round() / 10.0)
    };
    Quantiles {
        p50: level(0),
        p95: level(2),
        p99: level(3),
    }
}

pub(crate) fn parse_event_type(value: &str) -> Result<String, ApiError> {
    if !herald_http::field_schemas::is_event_type(value) {
        return Err(ApiError::invalid(
            "event_type",
            "must be an event type: 1-128 letters, digits and `.` `_` `-` `:`",
        ));
    }
    Ok(value.to_owned())
}

#[utoipa::path(
    get, path = "/v1/sli", tag = "sli",
    params(SliQuery),
    responses(
        (status = 200, body = SliSeries),
        (status = 503, description = "ClickHouse is unavailable", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn get_sli(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    ApiQuery(query): ApiQuery<SliQuery>,
) -> Result<Json<SliSeries>, ApiError> {
    let window = Window::parse(query.window.as_deref())?;
    let granularity = Granularity::parse(query.granularity.as_deref(), window)?;
    let mut filter = SliFilter::new(window, granularity, Utc::now());
    filter.tenant_id = Some(tenant_id.to_string());
    filter.endpoint_id = query
        .endpoint_id
        .as_deref()
        .map(|id| parse_uuid("endpoint_id", id).map(|id| id.to_string()))
        .transpose()?;
    filter.event_type = query
        .event_type
        .as_deref()
        .map(parse_event_type)
        .transpose()?;
    let (points, totals) = futures::try_join!(
        filter.measure(
            &state.clickhouse,
            "toString(toUnixTimestamp(period_start))",
            None
        ),
        filter.measure(&state.clickhouse, "''", None),
    )?;
    let mut points: Vec<SliPoint> = points
        .into_iter()
        .filter_map(|(key, sli)| {
            let start = key.parse::<i64>().ok()?;
            Some(SliPoint {
                period_start: DateTime::from_timestamp(start, 0)?,
                sli,
            })
        })
        .collect();
    points.sort_by_key(|point| point.period_start);
    let totals = totals
        .into_iter()
        .next()
        .map(|(_, sli)| sli)
        .unwrap_or_default();
    Ok(Json(SliSeries {
        window: window.name(),
        granularity: granularity.name(),
        since: filter.since,
        until: filter.until,
        totals,
        points,
    }))
}

#[utoipa::path(
    get, path = "/v1/sli/breakdown", tag = "sli",
    params(BreakdownQuery),
    responses(
        (status = 200, body = SliBreakdown),
        (status = 503, description = "ClickHouse is unavailable", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn get_breakdown(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    ApiQuery(query): ApiQuery<BreakdownQuery>,
) -> Result<Json<SliBreakdown>, ApiError> {
    let window = Window::parse(query.window.as_deref())?;
    let (by, key) = match query.by.as_deref() {
        None | Some("endpoint") => ("endpoint", "endpoint_id"),
        Some("event_type") => ("event_type", "event_type"),
        Some(_) => return Err(ApiError::invalid("by", "must be endpoint or event_type")),
    };
    let mut filter = SliFilter::new(window, window.default_granularity(), Utc::now());
    filter.tenant_id = Some(tenant_id.to_string());
    let data = filter
        .measure(&state.clickhouse, key, Some(MAX_BREAKDOWN_ROWS))
        .await?
        .into_iter()
        .map(|(key, sli)| SliGroup { key, sli })
        .collect();
    Ok(Json(SliBreakdown {
        window: window.name(),
        by,
        since: filter.since,
        until: filter.until,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_the_beginning_of_their_first_period() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T10:17:42Z")
            .expect("time")
            .with_timezone(&Utc);
        let minute = SliFilter::new(Window::Hour, Granularity::Minute, now);
        assert_eq!(minute.since.to_rfc3339(), "2026-11-26T09:17:00+00:00");
        let hour = SliFilter::new(Window::Day, Granularity::Hour, now);
        assert_eq!(hour.since.to_rfc3339(), "2026-11-25T10:00:00+00:00");
    }

    #[test]
    fn minute_points_are_offered_up_to_a_day() {
        assert_eq!(
            Granularity::parse(None, Window::SixHours).expect("default"),
            Granularity::Minute
        );
        assert_eq!(
            Granularity::parse(None, Window::Day).expect("default"),
            Granularity::Hour
        );
        assert!(Granularity::parse(Some("minute"), Window::Day).is_ok());
        assert_eq!(
            Granularity::parse(Some("minute"), Window::Week).expect("served by the hour"),
            Granularity::Hour
        );
        assert!(Granularity::parse(Some("second"), Window::Hour).is_err());
        assert!(Granularity::parse(Some("second"), Window::Hour).is_err());
        assert!(Window::parse(Some("2h")).is_err());
        assert_eq!(Window::parse(None).expect("default"), Window::Day);
    }

    #[test]
    fn empty_quantile_states_read_as_null() {
        let measured = quantiles(&[1.04, 2.0, 3.0, 4.26], 5);
        assert_eq!(measured.p50, Some(1.0));
        assert_eq!(measured.p95, Some(3.0));
        assert_eq!(measured.p99, Some(4.3));
        assert_eq!(quantiles(&[0.0, 0.0, 0.0, 0.0], 0), Quantiles::default());
        assert_eq!(quantiles(&[f64::NAN; 4], 0), Quantiles::default());
    }
}
