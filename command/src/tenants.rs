//! Operators' tenant routes (`/admin/v1/tenants`): create a tenant with its first API key,
//! list tenants, and change one: rename it, suspend or resume it, set its ingest rate limit.

use crate::api_keys::insert_key;
use crate::field_schemas::TenantName;
use crate::state::CommandState;
use crate::validation::MAX_TENANT_NAME_LENGTH;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::admin::AdminCaller;
use herald_http::{ApiError, ApiJson, ApiQuery, Scopes};
use herald_schemas::{Actor, LogMessage, RateLimit, TenantCreated, TenantId, TenantUpdated};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(value_type = TenantName)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreatedResponse {
    pub tenant_id: uuid::Uuid,
    /// Shown only now: Herald keeps only a hash of it. It has every scope.
    pub api_key: String,
    pub key_id: uuid::Uuid,
}

/// A tenant name as stored: trimmed, 1-200 visible characters.
pub(crate) fn checked_name(text: &str) -> Result<String, ApiError> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > MAX_TENANT_NAME_LENGTH {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_TENANT_NAME_LENGTH} characters"),
        ));
    }
    crate::validation::free_text(name, MAX_TENANT_NAME_LENGTH)
        .map_err(|error| ApiError::invalid("name", error.to_string()))?;
    Ok(name.to_owned())
}

#[utoipa::path(
    post, path = "/admin/v1/tenants", tag = "admin",
    request_body = CreateTenant,
    responses(
        (status = 201, body = TenantCreatedResponse),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn create_tenant(
    State(state): State<CommandState>,
    _admin: AdminCaller,
    ApiJson(request): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantCreatedResponse>), ApiError> {
    let name = checked_name(&request.name)?;
    let tenant_id = TenantId::generate();
    let created_at = Utc::now();
    let mut transaction = state.pool.begin().await?;
    sqlx::query("INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, $2, $3)")
        .bind(tenant_id.as_uuid())
        .bind(&name)
        .bind(created_at)
        .execute(&mut *transaction)
        .await?;
    let every_scope = Scopes {
        read: true,
        write: true,
    };
    let key = insert_key(&mut transaction, tenant_id, "first key", every_scope).await?;
    let message = LogMessage::TenantCreated(TenantCreated {
        tenant_id,
        name,
        created_at,
        actor: Actor::Operator,
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.outbox.send(staged).await;
    tracing::info!(%tenant_id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(TenantCreatedResponse {
            tenant_id: tenant_id.as_uuid(),
            api_key: key.api_key,
            key_id: key.key_id,
        }),
    ))
}

/// A tenant as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub tenant_id: uuid::Uuid,
    pub name: String,
    pub suspended: bool,
    pub suspended_at: Option<DateTime<Utc>>,
    /// `{"per_second", "burst"}`: events accepted a second across every command process.
    #[schema(value_type = Option<Object>)]
    pub ingest_rate_limit: Option<RateLimit>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant_id: uuid::Uuid,
    name: String,
    suspended_at: Option<DateTime<Utc>>,
    ingest_per_second: Option<i32>,
    ingest_burst: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl From<TenantRow> for TenantView {
    fn from(row: TenantRow) -> Self {
        Self {
            tenant_id: row.tenant_id,
            name: row.name,
            suspended: row.suspended_at.is_some(),
            suspended_at: row.suspended_at,
            ingest_rate_limit: row.ingest_per_second.map(|per_second| RateLimit {
                per_second: per_second.max(1) as u32,
                burst: row.ingest_burst.unwrap_or(per_second).max(1) as u32,
            }),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const TENANT_COLUMNS: &str =
    "tenant_id, name, suspended_at, ingest_per_second, ingest_burst, created_at, updated_at";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantListQuery {
    /// The `tenant_id` of the previous page's last tenant.
    pub after: Option<uuid::Uuid>,
    /// 1-1000, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// In `tenant_id` order (oldest first).
    pub data: Vec<TenantView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<uuid::Uuid>,
}

#[utoipa::path(
    get, path = "/admin/v1/tenants", tag = "admin",
    params(TenantListQuery),
    responses((status = 200, body = TenantList)),
    security(("admin_token" = []))
)]
pub async fn list_tenants(
    State(state): State<CommandState>,
    _admin: AdminCaller,
    ApiQuery(query): ApiQuery<TenantListQuery>,
) -> Result<Json<TenantList>, ApiError> {
    let limit: u32 = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|limit| (1..=1000).contains(limit))
            .ok_or_else(|| ApiError::invalid("limit", "must be a whole number from 1 to 1000"))?,
    };
    let rows: Vec<TenantRow> = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR tenant_id > $1) \
         ORDER BY tenant_id LIMIT $2"
    ))
    .bind(query.after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() > limit as usize;
    let data: Vec<TenantView> = rows
        .into_iter()
        .take(limit as usize)
        .map(TenantView::from)
        .collect();
    let next_after = more
        .then(|| data.last().map(|tenant| tenant.tenant_id))
        .flatten();
    Ok(Json(TenantList { data, next_after }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[schema(value_type = Option<TenantName>)]
    pub name: Option<String>,
    /// `true` refuses every request of the tenant with 403 (deliveries of events already
    /// accepted go on); `false` resumes it.
    pub suspended: Option<bool>,
    /// Events accepted a second, across every command process; over it `POST /v1/events`
    /// answers 429 with `Retry-After`. `null` removes the limit.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = Option<crate::endpoints::RateLimitRequest>, nullable)]
    pub ingest_rate_limit: Option<Option<crate::endpoints::RateLimitRequest>>,
}

#[utoipa::path(
    patch, path = "/admin/v1/tenants/{tenant_id}", tag = "admin",
    params(("tenant_id" = uuid::Uuid, Path)),
    request_body = UpdateTenant,
    responses(
        (status = 200, body = TenantView),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn update_tenant(
    State(state): State<CommandState>,
    _admin: AdminCaller,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<UpdateTenant>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant_id: TenantId = tenant_id
        .parse()
        .map_err(|_| ApiError::invalid("tenant_id", "must be a UUID"))?;
    let name = request.name.as_deref().map(checked_name).transpose()?;
    let limit = match request.ingest_rate_limit {
        Some(limit) => Some(
            crate::endpoints::validate_rate_limit(limit)
                .map_err(|error| error.within("ingest_rate_limit"))?,
        ),
        None => None,
    };
    let mut transaction = state.pool.begin().await?;
    let row: Option<TenantRow> = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE tenant_id = $1 FOR UPDATE"
    ))
    .bind(tenant_id.as_uuid())
    .fetch_optional(&mut *transaction)
    .await?;
    let mut tenant = TenantView::from(
        row.ok_or_else(|| ApiError::NotFound(format!("tenant {tenant_id} does not exist")))?,
    );
    let now = Utc::now();
    let mut changed = Vec::new();
    if let Some(name) = name {
        tenant.name = name;
        changed.push("name".to_owned());
    }
    if let Some(suspended) = request.suspended {
        if suspended != tenant.suspended {
            tenant.suspended_at = suspended.then_some(now);
        }
        tenant.suspended = suspended;
        changed.push("suspended".to_owned());
    }
    if let Some(limit) = limit {
        tenant.ingest_rate_limit = limit;
        changed.push("ingest_rate_limit".to_owned());
    }
    tenant.updated_at = Some(now);
    sqlx::query(
        "UPDATE tenants SET name = $2, suspended_at = $3, ingest_per_second = $4, \
           ingest_burst = $5, updated_at = $6 WHERE tenant_id = $1",
    )
    .bind(tenant_id.as_uuid())
    .bind(&tenant.name)
    .bind(tenant.suspended_at)
    .bind(
        tenant
            .ingest_rate_limit
            .map(|limit| limit.per_second as i32),
    )
    .bind(tenant.ingest_rate_limit.map(|limit| limit.burst as i32))
    .bind(now)
    .execute(&mut *transaction)
    .await?;
    if changed.iter().any(|field| field == "ingest_rate_limit") {
        // A new limit starts with a full bucket.
        sqlx::query("DELETE FROM tenant_ingest_buckets WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .execute(&mut *transaction)
            .await?;
    }
    let message = LogMessage::TenantUpdated(TenantUpdated {
        tenant_id,
        name: tenant.name.clone(),
        suspended: tenant.suspended,
        ingest_rate_limit: tenant.ingest_rate_limit,
        changed: changed.clone(),
        updated_at: now,
        actor: Actor::Operator,
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.authenticator.forget_tenant(tenant_id);
    state.ingest_limits.forget(tenant_id);
    state.outbox.send(staged).await;
    tracing::info!(%tenant_id, ?changed, "tenant updated");
    Ok(Json(tenant))
}
