//! What every query route shares.

use crate::config::QueryConfig;
use axum::extract::FromRef;
use herald_http::admin::AdminToken;
use herald_http::TenantAuthenticator;
use herald_log::LogPublisher;
use herald_rules::rate_limit::KeyedBuckets;
use herald_schemas::TenantId;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    /// The SLIs are read from the ClickHouse rollups (database already selected).
    pub clickhouse: clickhouse::Client,
    pub authenticator: Arc<TenantAuthenticator>,
    pub admin: Arc<AdminToken>,
    /// Replays are commands: they are appended to the log.
    pub publisher: LogPublisher,
    /// Per-tenant replay buckets (limits in `replay.rs`).
    pub replay_limit: Arc<KeyedBuckets<TenantId>>,
    /// Where portal links point: `<public_url>/portal/<token>`, without a trailing slash.
    pub public_url: Arc<str>,
}

impl QueryState {
    pub fn new(
        config: &QueryConfig,
        pool: PgPool,
        clickhouse: clickhouse::Client,
        authenticator: Arc<TenantAuthenticator>,
        admin: Arc<AdminToken>,
        publisher: LogPublisher,
        listening_on: SocketAddr,
    ) -> Self {
        let public_url = match &config.public_url {
            Some(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
            _ => format!("http://{listening_on}"),
        };
        Self {
            pool,
            clickhouse,
            authenticator,
            admin,
            publisher,
            replay_limit: Arc::default(),
            public_url: public_url.into(),
        }
    }
}

impl FromRef<QueryState> for Arc<TenantAuthenticator> {
    fn from_ref(state: &QueryState) -> Self {
        state.authenticator.clone()
    }
}

impl FromRef<QueryState> for Arc<AdminToken> {
    fn from_ref(state: &QueryState) -> Self {
        state.admin.clone()
    }
}
