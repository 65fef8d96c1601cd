//! Where workers learn an endpoint's current URL, secret and state. Endpoint configuration is
//! transactional data in Postgres; workers keep a short-lived copy so that a busy endpoint
//! costs one query per TTL, not one per delivery.

use crate::signature::WebhookSigner;
use chrono::Utc;
use herald_log::outbox::Outbox;
use herald_schemas::{
    EndpointDisabled, EndpointId, LogMessage, RateLimit, RetryPolicyOverride, TenantId,
};
use herald_store::endpoints::{self, DeliveryEndpointError};
use herald_store::secrets_vault::SecretsVault;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What a worker needs to deliver to an endpoint.
#[derive(Debug)]
pub struct EndpointTarget {
    pub url: String,
    /// The current secret first; during a rotation's grace period also the previous one.
    pub signers: Vec<WebhookSigner>,
    /// Custom headers sent with every delivery.
    pub headers: Vec<(String, String)>,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
    pub retry_policy: Option<RetryPolicyOverride>,
    /// Delivered by an ordered lane, one event at a time.
    pub ordered: bool,
}

/// A lookup result (including "no such endpoint") and when it was made.
type CachedTarget = (Option<Arc<EndpointTarget>>, Instant);

pub struct EndpointRegistry {
    pool: PgPool,
    vault: Arc<SecretsVault>,
    ttl: Duration,
    cache: RwLock<HashMap<EndpointId, CachedTarget>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("could not read or change endpoint configuration: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Unreadable(#[from] DeliveryEndpointError),
}

impl EndpointRegistry {
    pub fn new(pool: PgPool, vault: Arc<SecretsVault>, ttl: Duration) -> Self {
        Self {
            pool,
            vault,
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
        let row = endpoints::for_delivery(&self.pool, &self.vault, endpoint_id).await?;
        let target = row.and_then(|row| {
            let mut signers = Vec::with_capacity(2);
            for text in std::iter::once(row.secret).chain(row.previous_secret) {
                match WebhookSigner::parse(&text) {
                    Ok(signer) => signers.push(signer),
                    Err(error) => {
                        tracing::error!(%endpoint_id, %error, "stored endpoint secret is unreadable")
                    }
                }
            }
            (!signers.is_empty()).then(|| {
                Arc::new(EndpointTarget {
                    url: row.url,
                    signers,
                    headers: row.headers,
                    enabled: row.enabled,
                    rate_limit: row.rate_limit,
                    retry_policy: row.retry_policy,
                    ordered: row.ordered,
                })
            })
        });
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(endpoint_id, (target.clone(), Instant::now()));
        }
        Ok(target)
    }

    /// 410 Gone means the receiver will never want deliveries again: the endpoint is
    /// disabled, and the change announced in the log through `outbox`.
    #[tracing::instrument(skip(self, outbox), err)]
    pub async fn disable_gone(
        &self,
        tenant_id: TenantId,
        endpoint_id: EndpointId,
        outbox: &Outbox,
        subject: String,
    ) -> Result<(), RegistryError> {
        let disabled_at = Utc::now();
        let reason = format!(
            "the receiver answered 410 Gone at {}",
            disabled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let message = LogMessage::EndpointDisabled(EndpointDisabled {
            endpoint_id,
            tenant_id,
            reason: reason.clone(),
            disabled_at,
            actor: herald_schemas::Actor::Herald,
        });
        let mut transaction = self.pool.begin().await?;
        let updated = endpoints::disable_on_gone(&mut transaction, endpoint_id, &reason).await?;
        // Only the attempt that disabled it announces it (others find it already disabled).
        let staged = if updated == 1 {
            Some(Outbox::stage(&mut transaction, subject, &message).await?)
        } else {
            None
        };
        transaction.commit().await?;
        self.invalidate(endpoint_id);
        if let Some(staged) = staged {
            tracing::warn!(%endpoint_id, "endpoint disabled: receiver answered 410 Gone");
            outbox.send(staged).await;
        }
        Ok(())
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
