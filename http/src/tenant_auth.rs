//! Authenticates `/v1` callers by `Authorization: Bearer <token>` and scopes every request
//! to the token's tenant. The token is an API key (`hk_…`, everything the tenant may do) or a
//! portal session (`hps_…`, made by `POST /v1/portal_sessions`: reading, and replaying unless
//! read-only, until it expires). Known tokens are cached briefly so that the hot path costs
//! no database round trip; an unknown token always asks the database.

use crate::api_key::ApiKeyHash;
use crate::problem::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use herald_schemas::TenantId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: usize = 100_000;

/// Portal session tokens start with this; API keys with `hk_`.
pub const PORTAL_TOKEN_PREFIX: &str = "hps_";

/// What a request was authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    PortalSession {
        read_only: bool,
        expires_at: DateTime<Utc>,
    },
}

pub struct TenantAuthenticator {
    pool: PgPool,
    cache: RwLock<HashMap<ApiKeyHash, (TenantId, Credential, Instant)>>,
}

impl TenantAuthenticator {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The tenant of an API key; a portal session token is refused (403) since it may only
    /// read and replay.
    pub async fn authenticate(&self, presented_key: &str) -> Result<TenantId, ApiError> {
        match self.authenticate_any(presented_key).await? {
            (tenant_id, Credential::ApiKey) => Ok(tenant_id),
            (_, Credential::PortalSession { .. }) => Err(ApiError::Forbidden(
                "a portal session can read and replay, nothing else; use an API key".to_owned(),
            )),
        }
    }

    /// The tenant and kind of an API key or an unexpired portal session.
    pub async fn authenticate_any(
        &self,
        presented: &str,
    ) -> Result<(TenantId, Credential), ApiError> {
        let hash = ApiKeyHash::of(presented);
        if let Some(found) = self.cached(&hash) {
            return Ok(found);
        }
        let stored = if presented.starts_with(PORTAL_TOKEN_PREFIX) {
            self.stored_portal_session(&hash).await?
        } else {
            self.stored_tenant(&hash)
                .await?
                .map(|tenant_id| (tenant_id, Credential::ApiKey))
        };
        let (tenant_id, credential) = stored.ok_or_else(|| {
            ApiError::Unauthorized(if presented.starts_with(PORTAL_TOKEN_PREFIX) {
                "the portal session is not valid or has expired; ask for a new link".to_owned()
            } else {
                "the API key is not valid".to_owned()
            })
        })?;
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(hash, (tenant_id, credential, Instant::now()));
        }
        Ok((tenant_id, credential))
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

    async fn stored_portal_session(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<(TenantId, Credential)>, sqlx::Error> {
        let session = herald_store::portal_sessions::find_unexpired(&self.pool, &hash.0).await?;
        Ok(session.map(|session| {
            (
                TenantId(session.tenant_id),
                Credential::PortalSession {
                    read_only: session.read_only,
                    expires_at: session.expires_at,
                },
            )
        }))
    }

    /// A cached portal session is good until it expires, however recently it was cached.
    fn cached(&self, hash: &ApiKeyHash) -> Option<(TenantId, Credential)> {
        let cache = self.cache.read().ok()?;
        let (tenant_id, credential, cached_at) = cache.get(hash)?;
        let expired = match credential {
            Credential::ApiKey => false,
            Credential::PortalSession { expires_at, .. } => *expires_at <= Utc::now(),
        };
        (cached_at.elapsed() < CACHE_TTL && !expired).then_some((*tenant_id, *credential))
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

/// The caller of a route that portal sessions may use too: an API key or a portal session.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub credential: Credential,
}

impl Caller {
    /// Replays change what happens next: refused to a read-only portal session.
    pub fn may_replay(&self) -> Result<(), ApiError> {
        match self.credential {
            Credential::PortalSession {
                read_only: true, ..
            } => Err(ApiError::Forbidden(
                "this portal session is read-only: it cannot replay".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<TenantAuthenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(|| {
            ApiError::Unauthorized(
                "send your API key (or portal session token) as `Authorization: Bearer <token>`"
                    .to_owned(),
            )
        })?;
        let authenticator = Arc::<TenantAuthenticator>::from_ref(state);
        let (tenant_id, credential) = authenticator.authenticate_any(token).await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
        Ok(Self {
            tenant_id,
            credential,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
