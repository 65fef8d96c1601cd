//! What every query route shares.

use axum::extract::FromRef;
use herald_http::TenantAuthenticator;
use herald_log::LogPublisher;
use herald_rules::rate_limit::KeyedBuckets;
use herald_schemas::TenantId;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    pub authenticator: Arc<TenantAuthenticator>,
    /// Replays are commands: they are appended to the log.
    pub publisher: LogPublisher,
    /// Per-tenant replay buckets (limits in `replay.rs`).
    pub replay_limit: Arc<KeyedBuckets<TenantId>>,
}

impl QueryState {
    pub fn new(
        pool: PgPool,
        authenticator: Arc<TenantAuthenticator>,
        publisher: LogPublisher,
    ) -> Self {
        Self {
            pool,
            authenticator,
            publisher,
            replay_limit: Arc::default(),
        }
    }
}

impl FromRef<QueryState> for Arc<TenantAuthenticator> {
    fn from_ref(state: &QueryState) -> Self {
        state.authenticator.clone()
    }
}
