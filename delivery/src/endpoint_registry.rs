//! Where workers learn an endpoint's current URL, secret and state. Endpoint configuration is
//! transactional data in Postgres; workers keep a short-lived copy so that a busy endpoint
//! costs one query per TTL, not one per delivery.
//!
//! One query, not one per waiting delivery: when a copy expires while thousands of deliveries
//! to the endpoint are queued, they would all ask Postgres at once, exhaust the connection
//! pool and fail together (found by the `saturated` benchmark with delivery in a process of
//! its own). So one task reloads an endpoint at a time; meanwhile the others use the expired
//! copy if there is one (a change announced in the log removes the copy at once, so it is
//! never served after one), or wait for the reload.

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// One lock per endpoint being reloaded.
    reloading: Mutex<HashMap<EndpointId, Arc<tokio::sync::Mutex<()>>>>,
    /// Counts invalidations, so that a reload that raced with one does not cache what it read.
    invalidations: AtomicU64,
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
            reloading: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
        }
    }

    /// The endpoint's current configuration; `None` when it no longer exists.
    pub async fn get(
        &self,
        endpoint_id: EndpointId,
    ) -> Result<Option<Arc<EndpointTarget>>, RegistryError> {
        self.get_or_load(endpoint_id, || self.load(endpoint_id))
            .await
    }

    /// The cached copy while fresh; else one caller at a time runs `load` and caches what it
    /// found, while the others use the expired copy, or wait if there is none.
    async fn get_or_load<F, Fut>(
        &self,
        endpoint_id: EndpointId,
        load: F,
    ) -> Result<Option<Arc<EndpointTarget>>, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Arc<EndpointTarget>>, RegistryError>>,
    {
        let asked_at = Instant::now();
        let expired = match self.cached(endpoint_id) {
            Some((target, fetched_at)) if fetched_at.elapsed() < self.ttl => return Ok(target),
            Some((target, _)) => Some(target),
            None => None,
        };
        let lock = self.reload_lock(endpoint_id);
        let guard = match (lock.clone().try_lock_owned(), expired) {
            (Ok(guard), _) => guard,
            (Err(_), Some(expired)) => return Ok(expired),
            (Err(_), None) => lock.clone().lock_owned().await,
        };
        // Whoever held the lock before may have loaded it since this caller asked.
        let reloaded = match self.cached(endpoint_id) {
            Some((target, fetched_at)) if fetched_at >= asked_at => Ok(target),
            _ => {
                let invalidations = self.invalidations.load(Ordering::Acquire);
                let loaded = load().await;
                if let (Ok(target), Ok(mut cache)) = (&loaded, self.cache.write()) {
                    if self.invalidations.load(Ordering::Acquire) == invalidations {
                        cache.insert(endpoint_id, (target.clone(), Instant::now()));
                    }
                }
                loaded
            }
        };
        drop(guard);
        self.reloaded(endpoint_id, &lock);
        reloaded
    }

    async fn load(
        &self,
        endpoint_id: EndpointId,
    ) -> Result<Option<Arc<EndpointTarget>>, RegistryError> {
        let row = endpoints::for_delivery(&self.pool, &self.vault, endpoint_id).await?;
        Ok(row.and_then(|row| {
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
        }))
    }

    fn reload_lock(&self, endpoint_id: EndpointId) -> Arc<tokio::sync::Mutex<()>> {
        let mut reloading = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reloading.entry(endpoint_id).or_default().clone()
    }

    /// Drops the endpoint's reload lock once nobody else holds or waits for it.
    fn reloaded(&self, endpoint_id: EndpointId, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut reloading = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map's reference and the caller's.
        if Arc::strong_count(lock) <= 2 {
            reloading.remove(&endpoint_id);
        }
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
            self.invalidations.fetch_add(1, Ordering::AcqRel);
            cache.remove(&endpoint_id);
        }
    }

    fn cached(&self, endpoint_id: EndpointId) -> Option<CachedTarget> {
        let cache = self.cache.read().ok()?;
        cache.get(&endpoint_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn registry(ttl: Duration) -> Arc<EndpointRegistry> {
        // Never connected: these tests give their own loader.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://127.0.0.1:1/unused")
            .expect("a lazy pool");
        let key = herald_rules::sealing::SecretsKeyring::generate_key("k1");
        let vault = SecretsVault::from_text(&key).expect("a vault");
        Arc::new(EndpointRegistry::new(pool, vault, ttl))
    }

    fn target(url: &str) -> Option<Arc<EndpointTarget>> {
        Some(Arc::new(EndpointTarget {
            url: url.to_owned(),
            signers: Vec::new(),
            headers: Vec::new(),
            enabled: true,
            rate_limit: None,
            retry_policy: None,
            ordered: false,
        }))
    }

    fn url(target: &Option<Arc<EndpointTarget>>) -> &str {
        target.as_deref().map_or("", |target| target.url.as_str())
    }

    /// Many callers at once, each loading with a slow counting loader.
    async fn many_gets(
        registry: &Arc<EndpointRegistry>,
        endpoint_id: EndpointId,
        loads: &Arc<AtomicUsize>,
        url: &'static str,
    ) -> Vec<Option<Arc<EndpointTarget>>> {
        let calls = (0..200).map(|_| {
            let (registry, loads) = (registry.clone(), loads.clone());
            tokio::spawn(async move {
                registry
                    .get_or_load(endpoint_id, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(target(url))
                    })
                    .await
            })
        });
        let mut found = Vec::new();
        for call in futures::future::join_all(calls).await {
            found.push(call.expect("no panic").expect("loaded"));
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_without_a_copy_share_one_load() {
        let registry = registry(Duration::from_secs(60));
        let endpoint_id = EndpointId::generate();
        let loads = Arc::new(AtomicUsize::new(0));
        let found = many_gets(&registry, endpoint_id, &loads, "https://a.example").await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(found
            .iter()
            .all(|target| url(target) == "https://a.example"));
        assert!(registry.reloading.lock().expect("unpoisoned").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_copy_is_reloaded_once_and_served_meanwhile() {
        let registry = registry(Duration::ZERO);
        let endpoint_id = EndpointId::generate();
        let loads = Arc::new(AtomicUsize::new(0));
        many_gets(&registry, endpoint_id, &loads, "https://old.example").await;
        let before = loads.load(Ordering::SeqCst);
        let found = many_gets(&registry, endpoint_id, &loads, "https://new.example").await;
        // A TTL of zero: every caller finds the copy expired, yet one reloads it.
        assert_eq!(loads.load(Ordering::SeqCst) - before, 1);
        assert!(found
            .iter()
            .any(|target| url(target) == "https://old.example"));
    }

    #[tokio::test]
    async fn after_an_invalidation_the_old_copy_is_never_served() {
        let registry = registry(Duration::ZERO);
        let endpoint_id = EndpointId::generate();
        let load = |url: &'static str| move || async move { Ok(target(url)) };
        registry
            .get_or_load(endpoint_id, load("https://old.example"))
            .await
            .expect("loaded");
        registry.invalidate(endpoint_id);
        let found = registry
            .get_or_load(endpoint_id, load("https://new.example"))
            .await
            .expect("loaded");
        assert_eq!(url(&found), "https://new.example");
    }
}
