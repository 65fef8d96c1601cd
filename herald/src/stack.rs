//! Connections to the shared servers: NATS JetStream, Postgres, ClickHouse.

use crate::config::StackConfig;
use async_nats::jetstream;
use herald_schemas::Namespace;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::Duration;

#[derive(Clone)]
pub struct Stack {
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    pub namespace: Namespace,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    #[error("cannot connect to Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Stack {
    pub async fn connect(config: &StackConfig) -> Result<Self, StackError> {
        Self::connect_with_pool(config, config.database_max_connections).await
    }

    /// As [`Stack::connect`], with at most `database_connections` Postgres connections.
    pub async fn connect_with_pool(
        config: &StackConfig,
        database_connections: u32,
    ) -> Result<Self, StackError> {
        let namespace = config.namespace()?;
        // Several URLs are the servers of one cluster: the client connects to any of them and
        // moves to another when its server goes away.
        let nats = async_nats::ConnectOptions::new()
            .name("herald")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(config.nats_urls())
            .await
            .map_err(|error| StackError::Nats {
                url: config.nats_url.clone(),
                reason: error.to_string(),
            })?;
        // Wait for the first connection so that startup fails loudly when NATS is absent.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while nats.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(StackError::Nats {
                    url: config.nats_url.clone(),
                    reason: "not reachable within 10 s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let jetstream = jetstream::new(nats.clone());
        let pool = PgPoolOptions::new()
            .max_connections(database_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect(&config.database_url)
            .await?;
        let clickhouse = clickhouse_client(config).with_database(&config.clickhouse_database);
        Ok(Self {
            nats,
            jetstream,
            pool,
            clickhouse,
            namespace,
        })
    }
}

/// A ClickHouse client without a default database (for creating it).
pub fn clickhouse_client(config: &StackConfig) -> clickhouse::Client {
    // Schema validation asks the server for `describe_include_subcolumns`, which ClickHouse
    // 18.16 does not know; rows are checked by our own migrations and tests instead.
    clickhouse::Client::default()
        .with_url(&config.clickhouse_url)
        .with_validation(false)
}
