//! What every query route shares.

use axum::extract::FromRef;
use herald_delivery::rate_limit::KeyedRateLimit;
use herald_http::TenantAuthenticator;
use herald_log::LogPublisher;
use herald_schemas::TenantId;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    pub authenticator: Arc<TenantAuthenticator>,
    /// Replays are commands: they are appended to the log.
    pub publisher: LogPublisher,
    pub replay_limit: Arc<KeyedRateLimit<TenantId>>,
}

impl QueryState {
    /// Replays allowed per tenant: 10 a second, bursts of 20.
    pub fn new(
        pool: PgPool,
        authenticator: Arc<TenantAuthenticator>,
        publisher: LogPublisher,
    ) -> Self {
        Self {
            pool,
            authenticator,
            publisher,
            replay_limit: Arc::new(KeyedRateLimit::new(10.0, 20)),
        }
    }
}

impl FromRef<QueryState> for Arc<TenantAuthenticator> {
    fn from_ref(state: &QueryState) -> Self {
        state.authenticator.clone()
    }
}
