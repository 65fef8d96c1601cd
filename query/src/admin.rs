//! Operators' view across tenants (`/admin/v1`, the admin token): each tenant's delivery
//! SLIs and error rate from ClickHouse with its breakers from Postgres, and every breaker
//! that is not closed.

use crate::sli::{Sli, SliFilter, Window};
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::admin::AdminCaller;
use herald_http::{ApiError, ApiQuery};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Most tenants listed (the busiest first).
const MAX_TENANTS: u64 = 1000;
/// Most breakers listed (those open longest first).
const MAX_BREAKERS: i64 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantSliQuery {
    /// How far back from now (default 24h).
    #[param(value_type = Option<Window>)]
    pub window: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSli {
    pub tenant_id: String,
    /// Share of attempts that did not succeed; null without attempts.
    pub error_rate: Option<f64>,
    /// The tenant's endpoints whose breaker is open now.
    pub breakers_open: i64,
    /// The tenant's endpoints whose breaker lets a probe through now.
    pub breakers_half_open: i64,
    #[serde(flatten)]
    pub sli: Sli,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSliList {
    #[schema(value_type = Window)]
    pub window: &'static str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Tenants with attempts in the window or a breaker not closed, busiest first.
    pub data: Vec<TenantSli>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct BreakerView {
    pub tenant_id: Uuid,
    pub endpoint_id: Uuid,
    pub url: String,
    /// `open` or `half_open`.
    pub breaker_state: String,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_class: Option<String>,
    pub failure_streak: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BreakerList {
    pub data: Vec<BreakerView>,
}

#[utoipa::path(
    get, path = "/admin/v1/tenants/sli", tag = "admin",
    params(TenantSliQuery),
    responses(
        (status = 200, body = TenantSliList),
        (status = 503, description = "ClickHouse is unavailable", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn tenant_slis(
    State(state): State<QueryState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<TenantSliQuery>,
) -> Result<Json<TenantSliList>, ApiError> {
    let window = Window::parse(query.window.as_deref())?;
    let filter = SliFilter::new(window, window.default_granularity(), Utc::now());
    let (measured, breakers) = futures::try_join!(
        filter.measure(&state.clickhouse, "tenant_id", Some(MAX_TENANTS)),
        async {
            sqlx::query_as::<_, (Uuid, i64, i64)>(
                "SELECT tenant_id, count(*) FILTER (WHERE breaker_state = 'open'), \
                 count(*) FILTER (WHERE breaker_state = 'half_open') \
                 FROM endpoint_health_view WHERE breaker_state <> 'closed' GROUP BY tenant_id",
            )
            .fetch_all(&state.pool)
            .await
            .map_err(ApiError::from)
        }
    )?;
    let mut breakers: HashMap<String, (i64, i64)> = breakers
        .into_iter()
        .map(|(tenant_id, open, half_open)| (tenant_id.to_string(), (open, half_open)))
        .collect();
    let mut data: Vec<TenantSli> = measured
        .into_iter()
        .map(|(tenant_id, sli)| {
            let (open, half_open) = breakers.remove(&tenant_id).unwrap_or_default();
            tenant_sli(tenant_id, sli, open, half_open)
        })
        .collect();
    // A tenant whose breakers are open but that made no attempt in the window still shows.
    data.extend(breakers.into_iter().map(|(tenant_id, (open, half_open))| {
        tenant_sli(tenant_id, Sli::default(), open, half_open)
    }));
    Ok(Json(TenantSliList {
        window: window.name(),
        since: filter.since,
        until: filter.until,
        data,
    }))
}

fn tenant_sli(tenant_id: String, sli: Sli, open: i64, half_open: i64) -> TenantSli {
    TenantSli {
        tenant_id,
        error_rate: sli.success_rate.map(|rate| 1.0 - rate),
        breakers_open: open,
        breakers_half_open: half_open,
        sli,
    }
}

#[utoipa::path(
    get, path = "/admin/v1/breakers", tag = "admin",
    responses((status = 200, body = BreakerList)),
    security(("admin_token" = []))
)]
pub async fn open_breakers(
    State(state): State<QueryState>,
    _admin: AdminCaller,
) -> Result<Json<BreakerList>, ApiError> {
    let data: Vec<BreakerView> = sqlx::query_as(
        "SELECT tenant_id, endpoint_id, url, breaker_state, breaker_open_until, last_failure_at, \
         last_failure_class, failure_streak FROM endpoint_health_view \
         WHERE breaker_state <> 'closed' ORDER BY breaker_open_until, endpoint_id LIMIT $1",
    )
    .bind(MAX_BREAKERS)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(BreakerList { data }))
}
