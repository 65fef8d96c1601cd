//! What every query route shares.

use axum::extract::FromRef;
use herald_http::TenantAuthenticator;
use sqlx::PgPool;
use std::sync::Arc;

#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    pub authenticator: Arc<TenantAuthenticator>,
}

impl FromRef<QueryState> for Arc<TenantAuthenticator> {
    fn from_ref(state: &QueryState) -> Self {
        state.authenticator.clone()
    }
}
