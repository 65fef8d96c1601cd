//! Per-tenant ingest rate limits that hold across every command process.
//!
//! A tenant's limit is one token bucket in Postgres (`tenant_ingest_buckets`). A process does
//! not ask it for every event: it takes a small batch of tokens at once (a twentieth of the
//! rate, at least one) and spends them locally for up to a second; tokens left after that
//! second are dropped, not returned.
//!
//! How exact: every admitted event spent a token taken atomically from the shared bucket, so
//! over any interval `t` a tenant never gets more than `burst + per_second × t` events in,
//! however many processes serve it. The error is all on the side of refusing: tokens a
//! process took but did not use in their second are lost, at most one batch (5 % of the rate)
//! per process per second. Tenants without a limit cost nothing here beyond a cached lookup.

use chrono::Utc;
use herald_http::ApiError;
use herald_schemas::{RateLimit, TenantId};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a tenant's limit is trusted without word of a change from the log.
const LIMIT_TTL: Duration = Duration::from_secs(5);
/// How long a process may spend tokens it took.
const LEASE: Duration = Duration::from_secs(1);
/// A batch is this fraction of the rate.
const BATCHES_PER_SECOND: u32 = 20;
/// Tenants whose absence of a limit is remembered at once (the map is cleared when full).
const MAX_TENANTS_REMEMBERED: usize = 100_000;

pub struct IngestLimits {
    pool: PgPool,
    /// Tenants known to have no limit, and since when: the hot path for most tenants reads
    /// only this.
    unlimited: RwLock<HashMap<TenantId, Instant>>,
    tenants: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<TenantBucket>>>>,
}

#[derive(Default)]
struct TenantBucket {
    limit: Option<RateLimit>,
    limit_read_at: Option<Instant>,
    tokens: u32,
    lease_ends: Option<Instant>,
}

impl IngestLimits {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            unlimited: RwLock::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one event of `tenant_id`, or answers 429 with when to try again.
    pub async fn admit(&self, tenant_id: TenantId) -> Result<(), ApiError> {
        let known_unlimited = self
            .unlimited
            .read()
            .ok()
            .and_then(|unlimited| unlimited.get(&tenant_id).copied())
            .is_some_and(|since| since.elapsed() < LIMIT_TTL);
        if known_unlimited {
            return Ok(());
        }
        let bucket = self.bucket(tenant_id);
        let mut bucket = bucket.lock().await;
        let now = Instant::now();
        if bucket.limit_read_at.is_none_or(|at| now - at >= LIMIT_TTL) {
            bucket.limit = self.stored_limit(tenant_id).await?;
            bucket.limit_read_at = Some(now);
        }
        let Some(limit) = bucket.limit else {
            if let Ok(mut unlimited) = self.unlimited.write() {
                if unlimited.len() >= MAX_TENANTS_REMEMBERED {
                    unlimited.clear();
                }
                unlimited.insert(tenant_id, now);
            }
            return Ok(());
        };
        if bucket.lease_ends.is_none_or(|ends| now >= ends) {
            bucket.tokens = 0;
        }
        if bucket.tokens == 0 {
            let batch = limit
                .per_second
                .div_ceil(BATCHES_PER_SECOND)
                .clamp(1, limit.burst);
            let (granted, available) = self.take(tenant_id, limit, batch).await?;
            if granted == 0 {
                let wait = ((1.0 - available).max(0.0) / f64::from(limit.per_second)).max(0.001);
                return Err(ApiError::RateLimited {
                    retry_after: Duration::from_secs_f64(wait),
                    what: format!(
                        "this tenant's ingest rate limit ({} events a second, bursts of {})",
                        limit.per_second, limit.burst
                    ),
                });
            }
            bucket.tokens = granted;
            bucket.lease_ends = Some(now + LEASE);
        }
        bucket.tokens -= 1;
        Ok(())
    }

    /// Forgets what this process knows of the tenant's limit (it changed).
    pub fn forget(&self, tenant_id: TenantId) {
        if let Ok(mut unlimited) = self.unlimited.write() {
            unlimited.remove(&tenant_id);
        }
        if let Ok(mut tenants) = self.tenants.lock() {
            tenants.remove(&tenant_id);
        }
    }

    fn bucket(&self, tenant_id: TenantId) -> Arc<tokio::sync::Mutex<TenantBucket>> {
        let mut tenants = match self.tenants.lock() {
            Ok(tenants) => tenants,
            Err(poisoned) => poisoned.into_inner(),
        };
        tenants.entry(tenant_id).or_default().clone()
    }

    async fn stored_limit(&self, tenant_id: TenantId) -> Result<Option<RateLimit>, ApiError> {
        let row: Option<(Option<i32>, Option<i32>)> = sqlx::query_as(
            "SELECT ingest_per_second, ingest_burst FROM tenants WHERE tenant_id = $1",
        )
        .bind(tenant_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(per_second, burst)| {
            per_second.map(|per_second| RateLimit {
                per_second: per_second.max(1) as u32,
                burst: burst.unwrap_or(per_second).max(1) as u32,
            })
        }))
    }

    /// Takes up to `batch` whole tokens from the shared bucket, refilled for the time since
    /// it was last touched; returns how many it got and how many were there.
    async fn take(
        &self,
        tenant_id: TenantId,
        limit: RateLimit,
        batch: u32,
    ) -> Result<(u32, f64), ApiError> {
        for _ in 0..2 {
            let taken: Option<(i32, f64)> = sqlx::query_as(
                "WITH refilled AS ( \
                   SELECT LEAST($3::float8, tokens + GREATEST(0, \
                            extract(epoch FROM clock_timestamp() - refilled_at)) * $2::float8) \
                            AS available \
                   FROM tenant_ingest_buckets WHERE tenant_id = $1 FOR UPDATE) \
                 UPDATE tenant_ingest_buckets SET \
                   tokens = refilled.available - LEAST(floor(refilled.available), $4::float8), \
                   refilled_at = clock_timestamp() \
                 FROM refilled WHERE tenant_id = $1 \
                 RETURNING LEAST(floor(refilled.available), $4::float8)::int4, refilled.available",
            )
            .bind(tenant_id.as_uuid())
            .bind(f64::from(limit.per_second))
            .bind(f64::from(limit.burst))
            .bind(f64::from(batch))
            .fetch_optional(&self.pool)
            .await?;
            if let Some((granted, available)) = taken {
                return Ok((granted.max(0) as u32, available));
            }
            // The bucket starts full.
            sqlx::query(
                "INSERT INTO tenant_ingest_buckets (tenant_id, tokens, refilled_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant_id.as_uuid())
            .bind(f64::from(limit.burst))
            .bind(Utc::now())
            .execute(&self.pool)
            .await?;
        }
        Err(ApiError::internal(
            &"the tenant's ingest bucket vanished while in use",
        ))
    }
}
