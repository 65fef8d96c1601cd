//! Usage metering: what a tenant used per hour or day — events accepted, attempts, retries,
//! successes, request and response bytes — for a bill or a quota (`GET /v1/usage`), and
//! every tenant's for operators (`GET /admin/v1/usage`).
//!
//! Read from `tenant_usage_hourly` and `endpoint_usage_hourly`, which the Postgres projector
//! fills in the transactions that add events and attempts to the read model, counting each
//! row it really added (ADR 0021): the numbers are the log's, once each, and are kept after
//! the attempt history's retention.

use crate::params::{parse_limit, parse_time, parse_uuid};
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use herald_http::admin::AdminCaller;
use herald_http::{ApiError, ApiQuery, AuthenticatedTenant};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// How long the periods of a usage report are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGranularity {
    Hour,
    Day,
}

impl UsageGranularity {
    fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("hour") => Ok(Self::Hour),
            Some("day") => Ok(Self::Day),
            Some(_) => Err(ApiError::invalid("granularity", "must be hour or day")),
        }
    }

    fn period(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }

    /// The longest range one report covers: a month of hours, a year of days.
    fn max_range(self) -> Duration {
        match self {
            Self::Hour => Duration::days(31),
            Self::Day => Duration::days(366),
        }
    }

    /// The range asked for when none is: the last day of hours, the last 30 days.
    fn default_range(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(24),
            Self::Day => Duration::days(30),
        }
    }

    /// `date_trunc`'s name for the period.
    fn sql(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// The periods a report covers: those starting in `[since, until)`, both whole periods (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRange {
    pub granularity: UsageGranularity,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl UsageRange {
    /// `since` is rounded down to its period's start and `until` up to the next period's
    /// (so the period that contains `until` is in); absent, `until` is now and `since` the
    /// granularity's default range before it. Nothing that parses is refused (ADR 0016): a
    /// `since` after `until` is an empty range, more hours than one report holds are served
    /// by the day, and more days by the last 366 of them; the answer says which.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        granularity: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let mut granularity = UsageGranularity::parse(granularity)?;
        let until = until.map(|text| parse_time("until", text)).transpose()?;
        let since = since.map(|text| parse_time("since", text)).transpose()?;
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - granularity.default_range());
        if since >= until {
            let end = ceil(until, granularity.period());
            return Ok(Self {
                granularity,
                since: end,
                until: end,
            });
        }
        if ceil(until, Duration::hours(1)) - floor(since, Duration::hours(1))
            > UsageGranularity::Hour.max_range()
        {
            granularity = UsageGranularity::Day;
        }
        let period = granularity.period();
        let until = ceil(until, period);
        let since = floor(since, period).max(until - granularity.max_range());
        Ok(Self {
            granularity,
            since,
            until,
        })
    }
}

/// The start of the period `at` is in (periods divide the Unix epoch's seconds evenly).
fn floor(at: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let seconds = at.timestamp();
    let start = seconds - seconds.rem_euclid(period.num_seconds());
    DateTime::from_timestamp(start, 0).unwrap_or(at)
}

/// `at` when it starts a period, else the next period's start.
fn ceil(at: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let start = floor(at, period);
    if start == at {
        start
    } else {
        start + period
    }
}

/// What was used in one period, or in all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct UsageCounts {
    /// Events accepted (Herald's own `herald.…` events included).
    pub events_accepted: i64,
    /// Attempt records, as the attempt history lists them (deliveries that ended without a
    /// request included).
    pub attempts: i64,
    /// Of `attempts`, those after a delivery's first.
    pub retries: i64,
    /// Of `attempts`, those that succeeded.
    pub successes: i64,
    /// Bytes of request bodies that receivers answered.
    pub request_bytes: i64,
    /// Bytes of response bodies Herald read (at most 64 KiB each).
    pub response_bytes: i64,
}

impl UsageCounts {
    fn add(&mut self, other: &UsageCounts) {
        self.events_accepted += other.events_accepted;
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.successes += other.successes;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePeriod {
    pub period_start: DateTime<Utc>,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// An endpoint's use in one period (events are the tenant's, so `events_accepted` is 0).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointUsagePeriod {
    pub period_start: DateTime<Utc>,
    pub endpoint_id: Uuid,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub granularity: UsageGranularity,
    /// The first period's start.
    pub since: DateTime<Utc>,
    /// The end of the last period.
    pub until: DateTime<Utc>,
    pub totals: UsageCounts,
    /// The periods in which anything was used, oldest first.
    pub data: Vec<UsagePeriod>,
    /// With `by=endpoint`: each endpoint's use per period, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<EndpointUsagePeriod>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// The first period is the one containing this time (RFC 3339; default: `until` minus a
    /// day of hours, or 30 days).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// The last period is the one containing this time (RFC 3339; default: now).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
    /// `hour` (default) or `day`, in UTC. More than 31 days of hours are served by the day,
    /// more than 366 days by their last 366; the answer says which.
    #[param(value_type = Option<String>, pattern = "^(hour|day)$")]
    pub granularity: Option<String>,
    /// `endpoint`: each endpoint's use per period too.
    #[param(value_type = Option<String>, pattern = "^endpoint$")]
    pub by: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/usage", tag = "usage",
    params(UsageQuery),
    responses((status = 200, body = UsageReport)),
    security(("api_key" = []))
)]
pub async fn get_usage(
    State(state): State<QueryState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let range = UsageRange::parse(
        query.since.as_deref(),
        query.until.as_deref(),
        query.granularity.as_deref(),
        Utc::now(),
    )?;
    let by_endpoint = match query.by.as_deref() {
        None => false,
        Some("endpoint") => true,
        Some(_) => return Err(ApiError::invalid("by", "must be endpoint, or left out")),
    };
    let tenant = [tenant_id.as_uuid()];
    let mut periods = tenant_periods(&state.pool, &tenant, &range).await?;
    let data = periods.remove(&tenant_id.as_uuid()).unwrap_or_default();
    let endpoints = match by_endpoint {
        true => Some(endpoint_periods(&state.pool, tenant_id.as_uuid(), &range).await?),
        false => None,
    };
    Ok(Json(UsageReport {
        granularity: range.granularity,
        since: range.since,
        until: range.until,
        totals: totals(&data),
        data,
        endpoints,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUsageQuery {
    /// As for `/v1/usage`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// As for `/v1/usage`.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
    /// As for `/v1/usage`.
    #[param(value_type = Option<String>, pattern = "^(hour|day)$")]
    pub granularity: Option<String>,
    /// `next_after` of the previous page: tenants are listed in id order.
    #[param(value_type = Option<Uuid>)]
    pub after: Option<String>,
    /// Tenants per page (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// One tenant's use in the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant_id: Uuid,
    pub totals: UsageCounts,
    pub data: Vec<UsagePeriod>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsageList {
    pub granularity: UsageGranularity,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Tenants that used anything in the range, in id order.
    pub data: Vec<TenantUsage>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<Uuid>,
}

#[utoipa::path(
    get, path = "/admin/v1/usage", tag = "admin",
    params(AdminUsageQuery),
    responses((status = 200, body = TenantUsageList)),
    security(("admin_token" = []))
)]
pub async fn tenant_usage(
    State(state): State<QueryState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<AdminUsageQuery>,
) -> Result<Json<TenantUsageList>, ApiError> {
    let range = UsageRange::parse(
        query.since.as_deref(),
        query.until.as_deref(),
        query.granularity.as_deref(),
        Utc::now(),
    )?;
    let after = query
        .after
        .as_deref()
        .map(|text| parse_uuid("after", text))
        .transpose()?
        .unwrap_or(Uuid::nil());
    let limit = parse_limit(query.limit.as_deref(), 100, 1000)?;
    let mut tenants: Vec<Uuid> = sqlx::query_scalar(
        "SELECT tenant_id FROM ( \
           SELECT tenant_id FROM tenant_usage_hourly WHERE hour >= $1 AND hour < $2 AND tenant_id > $3 \
           UNION SELECT tenant_id FROM endpoint_usage_hourly WHERE hour >= $1 AND hour < $2 AND tenant_id > $3 \
         ) used ORDER BY tenant_id LIMIT $4",
    )
    .bind(range.since)
    .bind(range.until)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_after = (tenants.len() as i64 > limit).then(|| {
        tenants.truncate(limit as usize);
        tenants.last().copied()
    });
    let mut periods = tenant_periods(&state.pool, &tenants, &range).await?;
    let data = tenants
        .into_iter()
        .map(|tenant_id| {
            let data = periods.remove(&tenant_id).unwrap_or_default();
            TenantUsage {
                tenant_id,
                totals: totals(&data),
                data,
            }
        })
        .collect();
    Ok(Json(TenantUsageList {
        granularity: range.granularity,
        since: range.since,
        until: range.until,
        data,
        next_after: next_after.flatten(),
    }))
}

fn totals(periods: &[UsagePeriod]) -> UsageCounts {
    let mut totals = UsageCounts::default();
    for period in periods {
        totals.add(&period.counts);
    }
    totals
}

#[derive(sqlx::FromRow)]
struct PeriodRow {
    tenant_id: Uuid,
    period_start: DateTime<Utc>,
    #[sqlx(flatten)]
    counts: UsageCounts,
}

/// Each tenant's periods with any use, oldest first.
async fn tenant_periods(
    pool: &PgPool,
    tenants: &[Uuid],
    range: &UsageRange,
) -> Result<BTreeMap<Uuid, Vec<UsagePeriod>>, sqlx::Error> {
    if tenants.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<PeriodRow> = sqlx::query_as(
        "WITH events AS ( \
           SELECT tenant_id, date_trunc($4, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start, \
             sum(events_accepted)::int8 AS events_accepted \
           FROM tenant_usage_hourly WHERE tenant_id = ANY($1) AND hour >= $2 AND hour < $3 GROUP BY 1, 2), \
         attempts AS ( \
           SELECT tenant_id, date_trunc($4, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start, \
             sum(attempts)::int8 AS attempts, sum(retries)::int8 AS retries, sum(successes)::int8 AS successes, \
             sum(request_bytes)::int8 AS request_bytes, sum(response_bytes)::int8 AS response_bytes \
           FROM endpoint_usage_hourly WHERE tenant_id = ANY($1) AND hour >= $2 AND hour < $3 GROUP BY 1, 2) \
         SELECT tenant_id, period_start, coalesce(events_accepted, 0) AS events_accepted, \
           coalesce(attempts, 0) AS attempts, coalesce(retries, 0) AS retries, \
           coalesce(successes, 0) AS successes, coalesce(request_bytes, 0) AS request_bytes, \
           coalesce(response_bytes, 0) AS response_bytes \
         FROM events FULL JOIN attempts USING (tenant_id, period_start) \
         ORDER BY tenant_id, period_start",
    )
    .bind(tenants)
    .bind(range.since)
    .bind(range.until)
    .bind(range.granularity.sql())
    .fetch_all(pool)
    .await?;
    let mut periods: BTreeMap<Uuid, Vec<UsagePeriod>> = BTreeMap::new();
    for row in rows {
        periods.entry(row.tenant_id).or_default().push(UsagePeriod {
            period_start: row.period_start,
            counts: row.counts,
        });
    }
    Ok(periods)
}

#[derive(sqlx::FromRow)]
struct EndpointPeriodRow {
    endpoint_id: Uuid,
    period_start: DateTime<Utc>,
    #[sqlx(flatten)]
    counts: UsageCounts,
}

async fn endpoint_periods(
    pool: &PgPool,
    tenant_id: Uuid,
    range: &UsageRange,
) -> Result<Vec<EndpointUsagePeriod>, sqlx::Error> {
    let rows: Vec<EndpointPeriodRow> = sqlx::query_as(
        "SELECT endpoint_id, date_trunc($4, hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS period_start, \
           0::int8 AS events_accepted, sum(attempts)::int8 AS attempts, sum(retries)::int8 AS retries, \
           sum(successes)::int8 AS successes, sum(request_bytes)::int8 AS request_bytes, \
           sum(response_bytes)::int8 AS response_bytes \
         FROM endpoint_usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 \
         GROUP BY 1, 2 ORDER BY 2, 1",
    )
    .bind(tenant_id)
    .bind(range.since)
    .bind(range.until)
    .bind(range.granularity.sql())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| EndpointUsagePeriod {
            period_start: row.period_start,
            endpoint_id: row.endpoint_id,
            counts: row.counts,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().expect("valid time")
    }

    #[test]
    fn defaults_are_the_last_day_of_hours_and_the_last_30_days() {
        let now = at(1_796_000_000 + 1_234);
        let hours = UsageRange::parse(None, None, None, now).expect("valid");
        assert_eq!(hours.granularity, UsageGranularity::Hour);
        assert_eq!(hours.until - hours.since, Duration::hours(25));
        assert!(hours.until > now && hours.until - now < Duration::hours(1));
        let days = UsageRange::parse(None, None, Some("day"), now).expect("valid");
        assert_eq!(days.until - days.since, Duration::days(31));
    }

    #[test]
    fn refuses_only_what_does_not_parse_and_says_what_it_served() {
        let now = at(1_796_000_000);
        let refused = |since: Option<&str>, granularity: Option<&str>| match UsageRange::parse(
            since,
            None,
            granularity,
            now,
        ) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(refused(None, Some("minute")), "granularity");
        assert_eq!(refused(Some("yesterday"), None), "since");
        let range = |since: &str, until: &str, granularity: &str| {
            UsageRange::parse(Some(since), Some(until), Some(granularity), now).expect("served")
        };
        let backwards = range("2026-12-06T10:00:00Z", "2026-12-06T09:30:00Z", "hour");
        assert_eq!(backwards.since, backwards.until, "an empty range");
        let year_of_hours = range("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "hour");
        assert_eq!(year_of_hours.granularity, UsageGranularity::Day);
        let ages = range("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "day");
        assert_eq!(ages.until - ages.since, Duration::days(366));
    }

    proptest! {
        /// The range is whole periods that end where `until` does (rounded up), starts at
        /// `since` (rounded down) unless that is more than a report holds, and hours turn
        /// into days exactly when there are too many of them.
        #[test]
        fn a_range_is_whole_periods_around_what_was_asked(
            since in -60_000_000_000i64..250_000_000_000,
            length in 1i64..800 * 86_400,
            daily in any::<bool>(),
        ) {
            let asked = if daily { "day" } else { "hour" };
            let (since, until) = (at(since), at(since + length));
            let texts = (since.to_rfc3339(), until.to_rfc3339());
            let range = UsageRange::parse(Some(&texts.0), Some(&texts.1), Some(asked), until)
                .expect("every parsed range is served");
            let period = range.granularity.period();
            prop_assert_eq!(floor(range.since, period), range.since);
            prop_assert_eq!(floor(range.until, period), range.until);
            prop_assert!(range.until >= until && range.until - until < period);
            prop_assert!(range.until - range.since <= range.granularity.max_range());
            prop_assert!(
                range.since == floor(since, period)
                    || range.until - range.since == range.granularity.max_range()
            );
            if !daily {
                let hours = ceil(until, Duration::hours(1)) - floor(since, Duration::hours(1));
                prop_assert_eq!(
                    range.granularity == UsageGranularity::Day,
                    hours > UsageGranularity::Hour.max_range()
                );
            }
        }
    }
}
