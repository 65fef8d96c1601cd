//! Configuration: compiled defaults, then an optional TOML file (`HERALD_CONFIG_FILE`), then
//! environment variables `HERALD_<FIELD>`. Each service reads its own typed section from the
//! same sources; see the README for the full table.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use herald_command::CommandConfig;
use herald_delivery::DeliveryConfig;
use herald_projector::ProjectorConfig;
use herald_schemas::Namespace;
use serde::Deserialize;

/// Where the shared servers are and how this process serves HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct StackConfig {
    pub nats_url: String,
    pub database_url: String,
    pub database_max_connections: u32,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// Prefix of every stream and subject, so installations can share a NATS server.
    pub namespace: String,
    pub listen_addr: String,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:14222".to_owned(),
            database_url: "postgres://herald:herald@127.0.0.1:15432/herald".to_owned(),
            database_max_connections: 32,
            clickhouse_url: "http://127.0.0.1:18123".to_owned(),
            clickhouse_database: "herald".to_owned(),
            namespace: "herald".to_owned(),
            listen_addr: "127.0.0.1:8080".to_owned(),
        }
    }
}

impl StackConfig {
    pub fn namespace(&self) -> Result<Namespace, ConfigError> {
        Namespace::new(&self.namespace)
            .map_err(|error| ConfigError(format!("HERALD_NAMESPACE: {error}")))
    }
}

#[derive(Clone, Debug, Default)]
pub struct HeraldConfig {
    pub stack: StackConfig,
    pub command: CommandConfig,
    pub delivery: DeliveryConfig,
    pub projector: ProjectorConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl HeraldConfig {
    pub fn load() -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Ok(path) = std::env::var("HERALD_CONFIG_FILE") {
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(figment.merge(Env::prefixed("HERALD_").ignore(&["CONFIG_FILE"])))
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let extract_error = |error: figment::Error| ConfigError(error.to_string());
        Ok(Self {
            stack: figment.extract().map_err(extract_error)?,
            command: figment.extract().map_err(extract_error)?,
            delivery: figment.extract().map_err(extract_error)?,
            projector: figment.extract().map_err(extract_error)?,
        })
    }
}
