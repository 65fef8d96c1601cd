//! Authenticates `/v1` callers by `Authorization: Bearer <token>` and scopes every request
//! to the token's tenant. The token is an API key (`hk_…`, with scopes: `read` for `GET`,
//! `write` for everything else) or a portal session (`hps_…`, made by
//! `POST /v1/portal_sessions`: reading, and replaying unless read-only, until it expires).
//! A suspended tenant's tokens are refused with 403.
//!
//! Known tokens are cached briefly so that the hot path costs no database round trip; an
//! unknown token always asks the database. A revoked key or a suspended tenant leaves every
//! process's cache as soon as the process reads the change from the log
//! ([`TenantAuthenticator::forget_tenant`]), and after [`CACHE_TTL`] at the latest.

use crate::api_key::ApiKeyHash;
use crate::problem::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::Method;
use chrono::{DateTime, Utc};
use herald_schemas::{Actor, ApiKeyScope, TenantId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The longest a cached answer is used when the log's word of a change does not arrive.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_CAPACITY: usize = 100_000;

/// Portal session tokens start with this; API keys with `hk_`.
pub const PORTAL_TOKEN_PREFIX: &str = "hps_";

/// What a request was authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    ApiKey {
        key_id: uuid::Uuid,
        scopes: Scopes,
    },
    PortalSession {
        read_only: bool,
        expires_at: DateTime<Utc>,
    },
}

impl Credential {
    /// Who a change made with this credential is recorded as.
    pub fn actor(&self) -> Actor {
        match self {
            Self::ApiKey { key_id, .. } => Actor::ApiKey { key_id: *key_id },
            // Portal sessions change no configuration; their replays are requests, not
            // configuration changes.
            Self::PortalSession { .. } => Actor::Unrecorded,
        }
    }
}

/// An API key's scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
}

impl Scopes {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut scopes = Self::default();
        for name in names {
            match ApiKeyScope::parse(name) {
                Some(ApiKeyScope::Read) => scopes.read = true,
                Some(ApiKeyScope::Write) => scopes.write = true,
                None => {}
            }
        }
        scopes
    }

    pub fn names(&self) -> Vec<ApiKeyScope> {
        let mut names = Vec::with_capacity(2);
        if self.read {
            names.push(ApiKeyScope::Read);
        }
        if self.write {
            names.push(ApiKeyScope::Write);
        }
        names
    }

    /// Whether a key with these scopes may send a request with `method`.
    pub fn allow(&self, method: &Method) -> Result<(), ApiError> {
        let reading = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let (allowed, needed) = match reading {
            true => (self.read, "read"),
            false => (self.write, "write"),
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key lacks the `{needed}` scope that a {method} request needs; use a \
                 key that has it (`POST /v1/api_keys` makes one)"
            )))
        }
    }
}

struct Cached {
    tenant_id: TenantId,
    credential: Credential,
    suspended: bool,
    cached_at: Instant,
}

pub struct TenantAuthenticator {
    pool: PgPool,
    cache: RwLock<HashMap<ApiKeyHash, Cached>>,
}

impl TenantAuthenticator {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Drops every cached token of `tenant_id`: one of its keys was revoked, or the tenant
    /// was suspended or resumed.
    pub fn forget_tenant(&self, tenant_id: TenantId) {
        if let Ok(mut cache) = self.cache.write() {
            cache.retain(|_, cached| cached.tenant_id != tenant_id);
        }
    }

    /// The tenant and kind of an API key or an unexpired portal session.
    pub async fn authenticate_any(
        &self,
        presented: &str,
    ) -> Result<(TenantId, Credential), ApiError> {
        let hash = ApiKeyHash::of(presented);
        let (tenant_id, credential, suspended) = match self.cached(&hash) {
            Some(found) => found,
            None => self.look_up(presented, hash).await?,
        };
        if suspended {
            return Err(ApiError::Forbidden(
                "this tenant is suspended: its requests are refused until an operator resumes it"
                    .to_owned(),
            ));
        }
        Ok((tenant_id, credential))
    }

    async fn look_up(
        &self,
        presented: &str,
        hash: ApiKeyHash,
    ) -> Result<(TenantId, Credential, bool), ApiError> {
        let stored = if presented.starts_with(PORTAL_TOKEN_PREFIX) {
            self.stored_portal_session(&hash).await?
        } else {
            self.stored_key(&hash).await?
        };
        let (tenant_id, credential, suspended) = stored.ok_or_else(|| {
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
            cache.insert(
                hash,
                Cached {
                    tenant_id,
                    credential,
                    suspended,
                    cached_at: Instant::now(),
                },
            );
        }
        Ok((tenant_id, credential, suspended))
    }

    /// An unrevoked key with its tenant and whether the tenant is suspended.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stored_key(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<(TenantId, Credential, bool)>, sqlx::Error> {
        let row: Option<(uuid::Uuid, uuid::Uuid, Vec<String>, bool)> = sqlx::query_as(
            "SELECT k.tenant_id, k.key_id, k.scopes, t.suspended_at IS NOT NULL \
             FROM api_keys k JOIN tenants t ON t.tenant_id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(tenant_id, key_id, scopes, suspended)| {
            let scopes = Scopes::from_names(scopes.iter().map(String::as_str));
            (
                TenantId(tenant_id),
                Credential::ApiKey { key_id, scopes },
                suspended,
            )
        }))
    }

    async fn stored_portal_session(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<(TenantId, Credential, bool)>, sqlx::Error> {
        let Some(session) =
            herald_store::portal_sessions::find_unexpired(&self.pool, &hash.0).await?
        else {
            return Ok(None);
        };
        let suspended: bool =
            sqlx::query_scalar("SELECT suspended_at IS NOT NULL FROM tenants WHERE tenant_id = $1")
                .bind(session.tenant_id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(true);
        Ok(Some((
            TenantId(session.tenant_id),
            Credential::PortalSession {
                read_only: session.read_only,
                expires_at: session.expires_at,
            },
            suspended,
        )))
    }

    /// A cached portal session is good until it expires, however recently it was cached.
    fn cached(&self, hash: &ApiKeyHash) -> Option<(TenantId, Credential, bool)> {
        let cache = self.cache.read().ok()?;
        let cached = cache.get(hash)?;
        let expired = match cached.credential {
            Credential::ApiKey { .. } => false,
            Credential::PortalSession { expires_at, .. } => expires_at <= Utc::now(),
        };
        (cached.cached_at.elapsed() < CACHE_TTL && !expired).then_some((
            cached.tenant_id,
            cached.credential,
            cached.suspended,
        ))
    }
}

/// The tenant of the API key that authenticated this request, whose scopes allow the
/// request's method.
#[derive(Clone, Copy, Debug)]
pub struct AuthenticatedTenant(pub TenantId);

/// An API key caller whose scopes allow the request's method, when the handler needs to know
/// which key it was (configuration changes record it as their actor).
#[derive(Clone, Copy, Debug)]
pub struct ApiKeyCaller {
    pub tenant_id: TenantId,
    pub key_id: uuid::Uuid,
    pub scopes: Scopes,
}

impl ApiKeyCaller {
    pub fn actor(&self) -> Actor {
        Actor::ApiKey {
            key_id: self.key_id,
        }
    }
}

impl<S> FromRequestParts<S> for ApiKeyCaller
where
    Arc<TenantAuthenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let missing = "send your API key as `Authorization: Bearer <api_key>`";
        match resolve(parts, state, missing).await? {
            (tenant_id, Credential::ApiKey { key_id, scopes }) => Ok(Self {
                tenant_id,
                key_id,
                scopes,
            }),
            (_, Credential::PortalSession { .. }) => Err(ApiError::Forbidden(
                "a portal session can read and replay, nothing else; use an API key".to_owned(),
            )),
        }
    }
}

impl<S> FromRequestParts<S> for AuthenticatedTenant
where
    Arc<TenantAuthenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = ApiKeyCaller::from_request_parts(parts, state).await?;
        Ok(Self(caller.tenant_id))
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
        let missing =
            "send your API key (or portal session token) as `Authorization: Bearer <token>`";
        let (tenant_id, credential) = resolve(parts, state, missing).await?;
        Ok(Self {
            tenant_id,
            credential,
        })
    }
}

/// The tenant and credential of the request's bearer token (an API key whose scopes allow
/// the request's method, or an unexpired portal session); 401 with `missing` without one.
async fn resolve<S>(
    parts: &Parts,
    state: &S,
    missing: &str,
) -> Result<(TenantId, Credential), ApiError>
where
    Arc<TenantAuthenticator>: FromRef<S>,
{
    let token = bearer_token(parts).ok_or_else(|| ApiError::Unauthorized(missing.to_owned()))?;
    let authenticator = Arc::<TenantAuthenticator>::from_ref(state);
    let (tenant_id, credential) = authenticator.authenticate_any(token).await?;
    if let Credential::ApiKey { scopes, .. } = credential {
        scopes.allow(&parts.method)?;
    }
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
    Ok((tenant_id, credential))
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
