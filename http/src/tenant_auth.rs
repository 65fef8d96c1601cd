//! Authenticates `/v1` callers by `Authorization: Bearer <api_key>` and scopes every request
//! to the key's tenant. Known keys are cached briefly so that the hot path costs no database
//! round trip; an unknown key always asks the database.

use crate::api_key::ApiKeyHash;
use crate::problem::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use herald_schemas::TenantId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: usize = 100_000;

pub struct TenantAuthenticator {
    pool: PgPool,
    cache: RwLock<HashMap<ApiKeyHash, (TenantId, Instant)>>,
}

impl TenantAuthenticator {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            cache: RwLock::new(HashMap::new()),
        })
    }

    pub async fn authenticate(&self, presented_key: &str) -> Result<TenantId, ApiError> {
        let hash = ApiKeyHash::of(presented_key);
        if let Some(tenant_id) = self.cached(&hash) {
            return Ok(tenant_id);
        }
        let tenant_id = self
            .stored_tenant(&hash)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the API key is not valid".to_owned()))?;
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(hash, (tenant_id, Instant::now()));
        }
        Ok(tenant_id)
    }

    /// The tenant of an unrevoked key, from the database.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stored_tenant(&self, hash: &ApiKeyHash) -> Result<Option<TenantId>, sqlx::Error> {
        let row: Option<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(tenant_id,)| TenantId(tenant_id)))
    }

    fn cached(&self, hash: &ApiKeyHash) -> Option<TenantId> {
        let cache = self.cache.read().ok()?;
        let (tenant_id, cached_at) = cache.get(hash)?;
        (cached_at.elapsed() < CACHE_TTL).then_some(*tenant_id)
    }
}

/// The tenant of the API key that authenticated this request.
#[derive(Clone, Copy, Debug)]
pub struct AuthenticatedTenant(pub TenantId);

impl<S> FromRequestParts<S> for AuthenticatedTenant
where
    Arc<TenantAuthenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = bearer_token(parts).ok_or_else(|| {
            ApiError::Unauthorized(
                "send your API key as `Authorization: Bearer <api_key>`".to_owned(),
            )
        })?;
        let authenticator = Arc::<TenantAuthenticator>::from_ref(state);
        let tenant_id = authenticator.authenticate(key).await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
        Ok(Self(tenant_id))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
