//! Where workers learn an endpoint's current URL, secret and state. Endpoint configuration is
//! transactional data in Postgres; workers keep a short-lived copy so that a busy endpoint
//! costs one query per TTL, not one per delivery.

use crate::signature::SigningSecret;
use herald_schemas::{EndpointId, RateLimit, RetryPolicyOverride};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What a worker needs to deliver to an endpoint.
#[derive(Debug)]
pub struct EndpointTarget {
    pub url: String,
    /// The current secret first; during a rotation's grace period also the previous one.
    pub secrets: Vec<SigningSecret>,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
    pub retry_policy: Option<RetryPolicyOverride>,
    /// Delivered by an ordered lane, one event at a time.
    pub ordered: bool,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    url: String,
    secret: String,
    previous_secret: Option<String>,
    enabled: bool,
    rate_limit_per_second: Option<i32>,
    rate_limit_burst: Option<i32>,
    retry_policy: Option<sqlx::types::Json<RetryPolicyOverride>>,
    ordered: bool,
}

/// A lookup result (including "no such endpoint") and when it was made.
type CachedTarget = (Option<Arc<EndpointTarget>>, Instant);

pub struct EndpointRegistry {
    pool: PgPool,
    ttl: Duration,
    cache: RwLock<HashMap<EndpointId, CachedTarget>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("could not read endpoint configuration: {0}")]
    Database(#[from] sqlx::Error),
}

impl EndpointRegistry {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self {
            pool,
            ttl,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The endpoint's current configuration; `None` when it no longer exists.
    pub async fn get(
        &self,
        endpoint_id: EndpointId,
    ) -> Result<Option<Arc<EndpointTarget>>, RegistryError> {
        if let Some(target) = self.cached(endpoint_id) {
            return Ok(target);
        }
        let row: Option<EndpointRow> = sqlx::query_as(
            "SELECT url, secret, \
               CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret, \
               enabled, rate_limit_per_second, rate_limit_burst, retry_policy, ordered \
             FROM endpoints WHERE endpoint_id = $1",
        )
        .bind(endpoint_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        let target = row.and_then(|row| {
            let mut secrets = Vec::with_capacity(2);
            for text in std::iter::once(row.secret).chain(row.previous_secret) {
                match SigningSecret::parse(&text) {
                    Ok(secret) => secrets.push(secret),
                    Err(error) => {
                        tracing::error!(%endpoint_id, %error, "stored endpoint secret is unreadable")
                    }
                }
            }
            (!secrets.is_empty()).then(|| {
                Arc::new(EndpointTarget {
                    url: row.url,
                    secrets,
                    enabled: row.enabled,
                    rate_limit: row.rate_limit_per_second.map(|per_second| RateLimit {
                        per_second: per_second.max(1) as u32,
                        burst: row.rate_limit_burst.unwrap_or(per_second).max(1) as u32,
                    }),
                    retry_policy: row.retry_policy.map(|policy| policy.0),
                    ordered: row.ordered,
                })
            })
        });
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(endpoint_id, (target.clone(), Instant::now()));
        }
        Ok(target)
    }

    /// Where endpoint configuration lives, for changes made by delivery itself.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Forgets a cached endpoint, e.g. when the log says it changed.
    pub fn invalidate(&self, endpoint_id: EndpointId) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(&endpoint_id);
        }
    }

    fn cached(&self, endpoint_id: EndpointId) -> Option<Option<Arc<EndpointTarget>>> {
        let cache = self.cache.read().ok()?;
        let (target, fetched_at) = cache.get(&endpoint_id)?;
        (fetched_at.elapsed() < self.ttl).then(|| target.clone())
    }
}
