//! `GET /v1/deliveries`: the attempt history, newest first, filtered by event, endpoint,
//! outcome, the delivery's current status and time, paginated with an opaque cursor.
//! `outcome=dead_lettered,expired` lists the dead letters, each with its reason.

use crate::params::{
    cut_page, parse_limit, parse_time, parse_uuid, parse_words, AttemptOutcomeName, Cursor,
    DeliveryStatusName,
};
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::PageCursor;
use herald_http::{ApiError, ApiQuery, Caller};
use herald_schemas::{AttemptOutcome, DeliveryStatus};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 250;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only attempts for this event.
    #[param(value_type = Option<Uuid>)]
    pub event_id: Option<String>,
    /// Only attempts to this endpoint.
    #[param(value_type = Option<Uuid>)]
    pub endpoint_id: Option<String>,
    /// Only attempts with one of these outcomes (comma-separated): `succeeded`,
    /// `retry_scheduled`, `failed`, `dead_lettered`, `expired`.
    #[param(value_type = Option<Vec<AttemptOutcomeName>>, style = Form, explode = false, min_items = 1)]
    pub outcome: Option<String>,
    /// Only attempts of deliveries whose current status is one of these (comma-separated):
    /// `pending`, `retrying`, `succeeded`, `failed`, `dead_lettered`, `expired`.
    #[param(value_type = Option<Vec<DeliveryStatusName>>, style = Form, explode = false, min_items = 1)]
    pub status: Option<String>,
    /// Only attempts started at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// Only attempts started before this time (RFC 3339); at or before `since` matches none.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<PageCursor>)]
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
}

/// One HTTP attempt to deliver an event to an endpoint.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AttemptView {
    pub attempt_id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    /// 1 for the first attempt of a delivery.
    pub attempt_number: i32,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The receiver's status code; absent when it did not answer.
    pub http_status: Option<i32>,
    /// Why it failed: `http_3xx`, `http_4xx`, `http_429`, `http_5xx`, `timeout`,
    /// `connection`, `dns`, `target_refused`, `endpoint_unavailable`, `http_invalid`,
    /// `circuit_open` or `retry_budget` (deadline passed while held back), `expired`.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub latency_ms: i32,
    /// SHA-256 (hex) of the first 64 KiB of the receiver's response body.
    pub response_body_hash: Option<String>,
    /// `succeeded`, `retry_scheduled`, `failed`, `dead_lettered` or `expired`.
    pub outcome: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// W3C trace id, also sent to the receiver in `traceparent`.
    pub trace_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    pub data: Vec<AttemptView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/deliveries", tag = "deliveries",
    params(DeliveriesQuery),
    responses(
        (status = 200, body = AttemptPage),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn list_deliveries(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<AttemptPage>, ApiError> {
    let event_id = query
        .event_id
        .as_deref()
        .map(|id| parse_uuid("event_id", id))
        .transpose()?;
    let endpoint_id = query
        .endpoint_id
        .as_deref()
        .map(|id| parse_uuid("endpoint_id", id))
        .transpose()?;
    let since = query
        .since
        .as_deref()
        .map(|t| parse_time("since", t))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|t| parse_time("until", t))
        .transpose()?;
    let outcomes = query
        .outcome
        .as_deref()
        .map(parse_outcomes)
        .transpose()?
        .map(|mut outcomes| {
            outcomes.sort_by_key(|outcome| outcome.as_str());
            outcomes.dedup();
            outcomes
        });
    let statuses = query.status.as_deref().map(parse_statuses).transpose()?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;

    let filters = AttemptFilters {
        tenant_id: tenant_id.as_uuid(),
        event_id,
        endpoint_id,
        statuses: statuses
            .map(|statuses| statuses.into_iter().map(DeliveryStatus::as_str).collect()),
        since,
        until,
        cursor,
        rows: limit + 1,
    };
    let mut sql: QueryBuilder<'_, Postgres> = QueryBuilder::new("");
    match outcomes.as_deref() {
        None => filters.push_select(&mut sql, None),
        Some([only]) => filters.push_select(&mut sql, Some(*only)),
        // One ordered index range per outcome, merged: `outcome = ANY(…)` would make the
        // planner read every matching row of the tenant and sort them.
        Some(several) => {
            sql.push("SELECT * FROM (");
            for (index, outcome) in several.iter().enumerate() {
                if index > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push("(");
                filters.push_select(&mut sql, Some(*outcome));
                sql.push(")");
            }
            sql.push(") merged ORDER BY started_at DESC, attempt_id DESC LIMIT ")
                .push_bind(filters.rows);
        }
    }
    let mut data: Vec<AttemptView> = sql.build_query_as().fetch_all(&state.pool).await?;
    let next_cursor = cut_page(&mut data, limit, |last| Cursor {
        at: last.started_at,
        id: last.attempt_id,
    });
    Ok(Json(AttemptPage { data, next_cursor }))
}

/// The filters of one page of attempts, which a query may repeat once per outcome.
struct AttemptFilters {
    tenant_id: Uuid,
    event_id: Option<Uuid>,
    endpoint_id: Option<Uuid>,
    statuses: Option<Vec<&'static str>>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<Cursor>,
    rows: i64,
}

impl AttemptFilters {
    /// `SELECT … ORDER BY … LIMIT rows` of the attempts that pass, of `outcome` only when
    /// given. The outcome is written as a constant (it is one of the enum's words) so that
    /// every plan, generic ones included, may use the partial index of unsuccessful
    /// attempts (migration 17) and read it in order.
    fn push_select(&self, sql: &mut QueryBuilder<'_, Postgres>, outcome: Option<AttemptOutcome>) {
        sql.push(
            "SELECT attempt_id, event_id, endpoint_id, attempt_number, scheduled_at, started_at, \
             finished_at, http_status, error_code, error_message, latency_ms, response_body_hash, \
             outcome, next_attempt_at, trace_id FROM attempts a WHERE tenant_id = ",
        );
        sql.push_bind(self.tenant_id);
        if let Some(event_id) = self.event_id {
            sql.push(" AND event_id = ").push_bind(event_id);
        }
        if let Some(endpoint_id) = self.endpoint_id {
            sql.push(" AND endpoint_id = ").push_bind(endpoint_id);
        }
        if let Some(outcome) = outcome {
            sql.push(format_args!(" AND outcome = '{}'", outcome.as_str()));
        }
        if let Some(statuses) = &self.statuses {
            sql.push(
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = a.event_id \
                 AND d.endpoint_id = a.endpoint_id AND d.status = ANY(",
            )
            .push_bind(statuses.clone())
            .push("))");
        }
        if let Some(since) = self.since {
            sql.push(" AND started_at >= ").push_bind(since);
        }
        if let Some(until) = self.until {
            sql.push(" AND started_at < ").push_bind(until);
        }
        if let Some(cursor) = &self.cursor {
            sql.push(" AND (started_at, attempt_id) < (")
                .push_bind(cursor.at)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
        sql.push(" ORDER BY started_at DESC, attempt_id DESC LIMIT ")
            .push_bind(self.rows);
    }
}

fn parse_outcomes(text: &str) -> Result<Vec<AttemptOutcome>, ApiError> {
    let allowed = AttemptOutcome::ALL.map(AttemptOutcome::as_str);
    parse_words("outcome", "an outcome", text, &allowed)
}

fn parse_statuses(text: &str) -> Result<Vec<DeliveryStatus>, ApiError> {
    let allowed = DeliveryStatus::ALL.map(DeliveryStatus::as_str);
    parse_words("status", "a delivery status", text, &allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_filters_name_known_outcomes() {
        assert_eq!(
            parse_outcomes("dead_lettered, expired").expect("outcomes"),
            [AttemptOutcome::DeadLettered, AttemptOutcome::Expired]
        );
        let error = parse_outcomes("succeeded,retrying").expect_err("not an outcome");
        assert!(
            matches!(&error, ApiError::InvalidField { field, message } if field == "outcome"
                && message == "`retrying` is not an outcome; use one or more of succeeded, \
                    retry_scheduled, failed, dead_lettered, expired, comma-separated"),
            "{error:?}"
        );
    }
}
