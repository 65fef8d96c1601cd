//! `POST /admin/v1/tenants`: an operator creates a tenant and receives its first API key.

use crate::field_schemas::TenantName;
use crate::state::CommandState;
use crate::validation::MAX_TENANT_NAME_LENGTH;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::admin::AdminCaller;
use herald_http::{ApiError, ApiJson, ApiKey};
use herald_schemas::{LogMessage, TenantCreated, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(value_type = TenantName)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantCreatedResponse {
    pub tenant_id: uuid::Uuid,
    /// Shown only now: Herald keeps only a hash of it.
    pub api_key: String,
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
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_TENANT_NAME_LENGTH {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_TENANT_NAME_LENGTH} characters"),
        ));
    }
    crate::validation::free_text(name, MAX_TENANT_NAME_LENGTH)
        .map_err(|error| ApiError::invalid("name", error.to_string()))?;
    let tenant_id = TenantId::generate();
    let api_key = ApiKey::generate();
    let created_at = Utc::now();
    let mut transaction = state.pool.begin().await?;
    insert_tenant(&mut transaction, tenant_id, name, &api_key, created_at).await?;
    let message = LogMessage::TenantCreated(TenantCreated {
        tenant_id,
        name: name.to_owned(),
        created_at,
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.outbox.send(staged).await;
    tracing::info!(%tenant_id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(TenantCreatedResponse {
            tenant_id: tenant_id.as_uuid(),
            api_key: api_key.expose().to_owned(),
        }),
    ))
}

/// Creates the tenant and its first API key (only the key's hash is stored).
#[tracing::instrument(skip_all, fields(%tenant_id), err)]
async fn insert_tenant(
    connection: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    name: &str,
    api_key: &ApiKey,
    created_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tenants (tenant_id, name, created_at) VALUES ($1, $2, $3)")
        .bind(tenant_id.as_uuid())
        .bind(name)
        .bind(created_at)
        .execute(&mut *connection)
        .await?;
    sqlx::query("INSERT INTO api_keys (key_hash, tenant_id, created_at) VALUES ($1, $2, $3)")
        .bind(&api_key.hash().0[..])
        .bind(tenant_id.as_uuid())
        .bind(created_at)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
