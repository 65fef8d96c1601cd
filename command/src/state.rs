//! What every command route shares.

use crate::config::CommandConfig;
use crate::idempotency::IdempotencyKeys;
use crate::ingest_limit::IngestLimits;
use crate::routing::RoutingTable;
use axum::extract::FromRef;
use herald_http::admin::AdminToken;
use herald_http::TenantAuthenticator;
use herald_log::outbox::Outbox;
use herald_log::LogPublisher;
use herald_rules::target_guard::InvalidCidr;
use herald_rules::TargetGuard;
use herald_store::secrets_vault::SecretsVault;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct CommandState(Arc<Shared>);

pub struct Shared {
    pub pool: PgPool,
    pub publisher: LogPublisher,
    /// Configuration changes reach the log through it (staged in their transaction).
    pub outbox: Outbox,
    pub routing: RoutingTable,
    pub idempotency: IdempotencyKeys,
    pub authenticator: Arc<TenantAuthenticator>,
    pub target_guard: TargetGuard,
    pub admin: Arc<AdminToken>,
    /// Seals endpoint secrets and header values before they are stored.
    pub vault: Arc<SecretsVault>,
    pub ingest_limits: IngestLimits,
    /// `HERALD_REQUIRE_HTTPS`: endpoint URLs must be `https://`.
    pub require_https: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error("HERALD_ALLOWED_TARGET_CIDRS: {0}")]
    TargetCidrs(#[from] InvalidCidr),
    #[error("no master key for endpoint secrets (HERALD_SECRETS_KEY or HERALD_SECRETS_KEY_FILE)")]
    NoVault,
}

impl CommandState {
    pub fn new(
        config: &CommandConfig,
        pool: PgPool,
        publisher: LogPublisher,
        authenticator: Arc<TenantAuthenticator>,
        vault: Arc<SecretsVault>,
    ) -> Result<Self, InvalidConfig> {
        let target_guard = TargetGuard::from_list(&config.allowed_target_cidrs)?;
        let admin = AdminToken::new(
            config
                .admin_token
                .as_ref()
                .map(|token| token.expose_secret()),
        );
        Ok(Self(Arc::new(Shared {
            routing: RoutingTable::new(
                pool.clone(),
                Duration::from_millis(config.routing_cache_ttl_ms),
            ),
            outbox: Outbox::new(pool.clone(), publisher.clone()),
            idempotency: IdempotencyKeys::new(&pool),
            ingest_limits: IngestLimits::new(pool.clone()),
            pool,
            vault,
            require_https: config.require_https,
            publisher,
            authenticator,
            target_guard,
            admin,
        })))
    }
}

impl std::ops::Deref for CommandState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<CommandState> for Arc<AdminToken> {
    fn from_ref(state: &CommandState) -> Self {
        state.0.admin.clone()
    }
}

impl FromRef<CommandState> for Arc<TenantAuthenticator> {
    fn from_ref(state: &CommandState) -> Self {
        state.0.authenticator.clone()
    }
}
