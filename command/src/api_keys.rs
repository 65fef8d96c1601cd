//! `POST /v1/api_keys`, `GET /v1/api_keys` and `DELETE /v1/api_keys/{key_id}`: a tenant's
//! API keys. A key is shown once, when it is made; Herald keeps only its SHA-256. A revoked
//! key is refused by every process as soon as it reads the revocation from the log (and
//! after the authentication cache time, 10 s, at the latest).

use crate::field_schemas::{ApiKeyScopeName, TenantName};
use crate::state::CommandState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::{ApiError, ApiJson, ApiKey, ApiKeyCaller, Scopes};
use herald_schemas::{ApiKeyCreated, ApiKeyRevoked, ApiKeyScope, LogMessage, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Keys a tenant may hold unrevoked at once.
pub const MAX_KEYS_PER_TENANT: i64 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. `billing service`.
    #[schema(value_type = TenantName)]
    pub name: String,
    /// Defaults to the creating key's scopes; a key cannot grant what it lacks.
    #[schema(value_type = Option<Vec<ApiKeyScopeName>>, min_items = 1)]
    pub scopes: Option<Vec<ApiKeyScope>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyMade {
    pub key_id: uuid::Uuid,
    /// Shown only now.
    pub api_key: String,
    pub name: String,
    #[schema(value_type = Vec<ApiKeyScopeName>)]
    pub scopes: Vec<ApiKeyScope>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKeyView {
    pub key_id: uuid::Uuid,
    pub name: String,
    #[schema(value_type = Vec<ApiKeyScopeName>)]
    #[sqlx(skip)]
    pub scopes: Vec<ApiKeyScope>,
    #[serde(skip)]
    #[schema(ignore)]
    pub scope_names: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Set once the key is revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Newest first, revoked ones included.
    pub data: Vec<ApiKeyView>,
}

#[utoipa::path(
    post, path = "/v1/api_keys", tag = "api_keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, body = ApiKeyMade),
        (status = 409, description = "The tenant already holds the most unrevoked keys it may", body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_api_key(
    State(state): State<CommandState>,
    caller: ApiKeyCaller,
    ApiJson(request): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, Json<ApiKeyMade>), ApiError> {
    let name = crate::tenants::checked_name(&request.name)?;
    let scopes = match request.scopes {
        None => caller.scopes,
        Some(requested) if requested.is_empty() => {
            return Err(ApiError::invalid("scopes", "must name at least one scope"))
        }
        Some(requested) => {
            let scopes = Scopes::from_names(requested.iter().map(|scope| scope.as_str()));
            if (scopes.read && !caller.scopes.read) || (scopes.write && !caller.scopes.write) {
                return Err(ApiError::Forbidden(
                    "a key cannot make a key with a scope it does not have itself".to_owned(),
                ));
            }
            scopes
        }
    };
    let mut transaction = state.pool.begin().await?;
    let unrevoked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
    )
    .bind(caller.tenant_id.as_uuid())
    .fetch_one(&mut *transaction)
    .await?;
    if unrevoked >= MAX_KEYS_PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "this tenant already holds {MAX_KEYS_PER_TENANT} unrevoked keys; revoke one first"
        )));
    }
    let made = insert_key(&mut transaction, caller.tenant_id, &name, scopes).await?;
    let message = LogMessage::ApiKeyCreated(ApiKeyCreated {
        key_id: made.key_id,
        tenant_id: caller.tenant_id,
        name: name.clone(),
        scopes: scopes.names(),
        created_at: made.created_at,
        actor: caller.actor(),
    });
    let staged =
        crate::stage_config_change(&mut transaction, &state, caller.tenant_id, &message).await?;
    transaction.commit().await?;
    state.outbox.send(staged).await;
    tracing::info!(tenant_id = %caller.tenant_id, key_id = %made.key_id, "API key created");
    Ok((StatusCode::CREATED, Json(made)))
}

/// Stores a new key (its hash) and returns it, shown this once.
pub(crate) async fn insert_key(
    connection: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    name: &str,
    scopes: Scopes,
) -> Result<ApiKeyMade, sqlx::Error> {
    let key = ApiKey::generate();
    let key_id = uuid::Uuid::now_v7();
    let created_at = Utc::now();
    let names: Vec<&str> = scopes.names().iter().map(|scope| scope.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_keys (key_hash, tenant_id, created_at, key_id, name, scopes) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.hash().0[..])
    .bind(tenant_id.as_uuid())
    .bind(created_at)
    .bind(key_id)
    .bind(name)
    .bind(&names)
    .execute(connection)
    .await?;
    Ok(ApiKeyMade {
        key_id,
        api_key: key.expose().to_owned(),
        name: name.to_owned(),
        scopes: scopes.names(),
        created_at,
    })
}

#[utoipa::path(
    get, path = "/v1/api_keys", tag = "api_keys",
    responses((status = 200, body = ApiKeyList)),
    security(("api_key" = []))
)]
pub async fn list_api_keys(
    State(state): State<CommandState>,
    caller: ApiKeyCaller,
) -> Result<Json<ApiKeyList>, ApiError> {
    let mut keys: Vec<ApiKeyView> = sqlx::query_as(
        "SELECT key_id, name, scopes AS scope_names, created_at, revoked_at FROM api_keys \
         WHERE tenant_id = $1 ORDER BY created_at DESC, key_id DESC",
    )
    .bind(caller.tenant_id.as_uuid())
    .fetch_all(&state.pool)
    .await?;
    for key in &mut keys {
        key.scopes = key
            .scope_names
            .iter()
            .filter_map(|name| ApiKeyScope::parse(name))
            .collect();
    }
    Ok(Json(ApiKeyList { data: keys }))
}

#[utoipa::path(
    delete, path = "/v1/api_keys/{key_id}", tag = "api_keys",
    params(("key_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Revoked (again, if it already was)"),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn revoke_api_key(
    State(state): State<CommandState>,
    caller: ApiKeyCaller,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key_id: uuid::Uuid = key_id
        .parse()
        .map_err(|_| ApiError::invalid("key_id", "must be a UUID"))?;
    let mut transaction = state.pool.begin().await?;
    let revoked_at = Utc::now();
    let found: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "SELECT revoked_at FROM api_keys WHERE key_id = $1 AND tenant_id = $2 FOR UPDATE",
    )
    .bind(key_id)
    .bind(caller.tenant_id.as_uuid())
    .fetch_optional(&mut *transaction)
    .await?;
    match found {
        None => {
            return Err(ApiError::NotFound(format!(
                "API key {key_id} does not exist for this tenant"
            )))
        }
        // Revoking twice changes nothing and records nothing.
        Some(Some(_)) => return Ok(StatusCode::NO_CONTENT),
        Some(None) => {}
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1")
        .bind(key_id)
        .bind(revoked_at)
        .execute(&mut *transaction)
        .await?;
    let message = LogMessage::ApiKeyRevoked(ApiKeyRevoked {
        key_id,
        tenant_id: caller.tenant_id,
        revoked_at,
        actor: caller.actor(),
    });
    let staged =
        crate::stage_config_change(&mut transaction, &state, caller.tenant_id, &message).await?;
    transaction.commit().await?;
    // This process refuses it at once; the others when they read the log.
    state.authenticator.forget_tenant(caller.tenant_id);
    state.outbox.send(staged).await;
    tracing::info!(tenant_id = %caller.tenant_id, %key_id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
