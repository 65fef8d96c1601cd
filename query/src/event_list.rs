//! `GET /v1/events`: a tenant's events, newest first, filtered by time, type and status,
//! paginated with an opaque cursor. Payloads and deliveries are at `GET /v1/events/{id}`.

use crate::params::{cut_page, parse_limit, parse_time, parse_words, Cursor, EventStatusName};
use crate::state::QueryState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::{EventTypeName, PageCursor};
use herald_http::{ApiError, ApiQuery, Caller};
use herald_schemas::EventStatus;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 250;
/// Event types named in one `type` filter at most.
const MAX_TYPES: usize = 20;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events accepted at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// Only events accepted before this time (RFC 3339); at or before `since` matches none.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
    /// Only events of these types (comma-separated, at most 20).
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<Vec<EventTypeName>>, style = Form, explode = false, min_items = 1, max_items = 20)]
    pub event_type: Option<String>,
    /// Only events with one of these statuses (comma-separated): `pending`, `delivering`,
    /// `delivered`, `failed`.
    #[param(value_type = Option<Vec<EventStatusName>>, style = Form, explode = false, min_items = 1)]
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<PageCursor>)]
    pub cursor: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 250)]
    pub limit: Option<String>,
}

/// An accepted event, without its payload.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct EventSummary {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    #[sqlx(rename = "event_type")]
    pub event_type: String,
    /// `pending` (no attempt yet), `delivering`, `delivered` (every delivery succeeded) or
    /// `failed` (every delivery is over and at least one did not succeed).
    pub status: String,
    pub accepted_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub trace_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("portal_session" = []))
)]
pub async fn list_events(
    State(state): State<QueryState>,
    Caller { tenant_id, .. }: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
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
    let types = query.event_type.as_deref().map(parse_types).transpose()?;
    let statuses = query.status.as_deref().map(parse_statuses).transpose()?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;

    let mut sql: QueryBuilder<'_, Postgres> = QueryBuilder::new(
        "SELECT event_id, event_type, status, accepted_at, idempotency_key, trace_id \
         FROM events WHERE tenant_id = ",
    );
    sql.push_bind(tenant_id.as_uuid());
    if let Some(types) = types {
        sql.push(" AND event_type = ANY(")
            .push_bind(types)
            .push(")");
    }
    if let Some(statuses) = statuses {
        let statuses: Vec<&str> = statuses.into_iter().map(EventStatus::as_str).collect();
        sql.push(" AND status = ANY(").push_bind(statuses).push(")");
    }
    if let Some(since) = since {
        sql.push(" AND accepted_at >= ").push_bind(since);
    }
    if let Some(until) = until {
        sql.push(" AND accepted_at < ").push_bind(until);
    }
    if let Some(cursor) = cursor {
        sql.push(" AND (accepted_at, event_id) < (")
            .push_bind(cursor.at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    sql.push(" ORDER BY accepted_at DESC, event_id DESC LIMIT ")
        .push_bind(limit + 1);
    let mut data: Vec<EventSummary> = sql.build_query_as().fetch_all(&state.pool).await?;
    let next_cursor = cut_page(&mut data, limit, |last| Cursor {
        at: last.accepted_at,
        id: last.event_id,
    });
    Ok(Json(EventPage { data, next_cursor }))
}

/// Exactly the document's list of event types: no blanks to skip, so that what the
/// document calls invalid is refused rather than half-read.
fn parse_types(text: &str) -> Result<Vec<String>, ApiError> {
    let types: Vec<String> = text.split(',').map(str::to_owned).collect();
    if types.len() > MAX_TYPES {
        return Err(ApiError::invalid(
            "type",
            format!("must name 1 to {MAX_TYPES} event types, comma-separated"),
        ));
    }
    if let Some(wrong) = types
        .iter()
        .find(|name| !herald_http::field_schemas::is_event_type(name))
    {
        return Err(ApiError::invalid(
            "type",
            format!(
                "`{wrong}` is not an event type (1-128 letters, digits and `.` `_` `-` `:`, comma-separated without spaces)"
            ),
        ));
    }
    Ok(types)
}

fn parse_statuses(text: &str) -> Result<Vec<EventStatus>, ApiError> {
    let allowed = EventStatus::ALL.map(EventStatus::as_str);
    parse_words("status", "an event status", text, &allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_what_is_wrong() {
        assert_eq!(
            parse_statuses("failed, pending").expect("statuses"),
            [EventStatus::Failed, EventStatus::Pending]
        );
        assert!(parse_statuses("done").is_err());
        assert_eq!(
            parse_types("order.created,order.paid").expect("types"),
            ["order.created", "order.paid"]
        );
        assert!(parse_types(" , ").is_err());
        assert!(parse_types("order.created,,order.paid").is_err());
        assert!(parse_types("order created").is_err());
        assert!(parse_types(&vec!["a"; 21].join(",")).is_err());
    }
}
