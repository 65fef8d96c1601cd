//! Configuration: compiled defaults, then an optional TOML file (`HERALD_CONFIG_FILE`), then
//! environment variables `HERALD_<FIELD>`. Each service reads its own typed section from the
//! same sources; see the README for the full table.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use herald_command::CommandConfig;
use herald_delivery::DeliveryConfig;
use herald_projector::ProjectorConfig;
use herald_query::QueryConfig;
use herald_schemas::Namespace;
use serde::Deserialize;

/// Where the shared servers are and how this process serves HTTP.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct StackConfig {
    /// One NATS URL, or several separated by commas (the servers of a cluster).
    pub nats_url: String,
    pub database_url: String,
    pub database_max_connections: u32,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    /// Prefix of every stream and subject, so installations can share a NATS server.
    pub namespace: String,
    pub listen_addr: String,
    /// How many servers of a JetStream cluster keep each stream: 1 on a single server, 3 (or 5)
    /// in a cluster. Changing it on existing streams re-replicates them.
    pub log_replicas: usize,
    /// Days the log keeps a message (0: for ever). At least `HERALD_RETENTION_DAYS`: the
    /// read models are rebuilt from the log, so it must hold what they show.
    pub log_max_age_days: u32,
    /// Milliseconds attempt records and acknowledgements may wait to be sent to the log
    /// with others (0: each alone); see `herald_log::grouped_writes`.
    pub log_linger_ms: u64,
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
            log_replicas: 1,
            log_max_age_days: 0,
            log_linger_ms: 20,
        }
    }
}

/// Longer would keep the log's acknowledgements and the read models waiting for little gain.
const MAX_LOG_LINGER_MS: u64 = 100;
/// JetStream keeps at most five copies of a stream.
pub const MAX_LOG_REPLICAS: usize = 5;

impl StackConfig {
    pub fn namespace(&self) -> Result<Namespace, ConfigError> {
        Namespace::new(&self.namespace)
            .map_err(|error| ConfigError(format!("HERALD_NAMESPACE: {error}")))
    }

    /// The NATS URLs, one per server of the cluster.
    pub fn nats_urls(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_LOG_REPLICAS).contains(&self.log_replicas) {
            return Err(ConfigError(format!(
                "HERALD_LOG_REPLICAS: must be between 1 and {MAX_LOG_REPLICAS} (JetStream's \
                 limit), got {}",
                self.log_replicas
            )));
        }
        if self.nats_urls().is_empty() {
            return Err(ConfigError("HERALD_NATS_URL: no URL given".to_owned()));
        }
        if self.log_linger_ms > MAX_LOG_LINGER_MS {
            return Err(ConfigError(format!(
                "HERALD_LOG_LINGER_MS: at most {MAX_LOG_LINGER_MS} (acknowledgements and the \
                 projections wait this long), got {}",
                self.log_linger_ms
            )));
        }
        Ok(())
    }
}

/// The master keys that seal endpoint secrets and custom header values at rest. The command
/// and delivery services need them; `make run` generates a key file in `.stack/`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SecretsConfig {
    /// `<key_id>:<base64 of 32 bytes>`, several separated by commas, the current one first.
    pub secrets_key: Option<secrecy::SecretString>,
    /// A file of such keys, one per line; read again when a value sealed under a key this
    /// process does not know turns up (a rotation made by another process).
    pub secrets_key_file: Option<std::path::PathBuf>,
}

impl SecretsConfig {
    /// The vault of the configured keys; an error when none are configured.
    pub fn vault(
        &self,
    ) -> Result<std::sync::Arc<herald_store::secrets_vault::SecretsVault>, ConfigError> {
        use herald_store::secrets_vault::SecretsVault;
        use secrecy::ExposeSecret;
        // An empty value counts as unset, so that one can be switched off in an environment
        // that sets it.
        let inline = self
            .secrets_key
            .as_ref()
            .filter(|text| !text.expose_secret().trim().is_empty());
        let file = self
            .secrets_key_file
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty());
        let vault = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "set HERALD_SECRETS_KEY or HERALD_SECRETS_KEY_FILE, not both".to_owned(),
                ))
            }
            (Some(text), None) => SecretsVault::from_text(text.expose_secret()),
            (None, Some(path)) => SecretsVault::from_file(path),
            (None, None) => {
                return Err(ConfigError(
                    "Herald stores endpoint secrets encrypted and needs a master key: set \
                     HERALD_SECRETS_KEY_FILE (`make run` keeps one in .stack/secrets.key) or \
                     HERALD_SECRETS_KEY; `herald secrets generate-key` prints a new key"
                        .to_owned(),
                ))
            }
        };
        vault.map_err(|error| ConfigError(error.to_string()))
    }
}

/// OpenTelemetry trace export over OTLP/HTTP: off unless an endpoint is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (e.g. `http://127.0.0.1:4318`); spans are POSTed to
    /// `<url>/v1/traces`. Unset or empty: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub otlp_service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_service_name: "herald".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Where spans are POSTed, when export is on.
    pub fn traces_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(endpoint) = self
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
        else {
            return Ok(None);
        };
        let invalid = |why: &str| {
            ConfigError(format!(
                "HERALD_OTLP_ENDPOINT: {why}, got `{endpoint}` (the receiver's base URL, e.g. \
                 http://127.0.0.1:4318)"
            ))
        };
        let url = reqwest::Url::parse(endpoint).map_err(|_| invalid("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must be an http or https URL"));
        }
        Ok(Some(format!(
            "{}/v1/traces",
            endpoint.trim_end_matches('/')
        )))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.traces_url()?;
        if self.otlp_service_name.trim().is_empty() {
            return Err(ConfigError(
                "HERALD_OTLP_SERVICE_NAME: must not be empty".to_owned(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct HeraldConfig {
    pub stack: StackConfig,
    pub secrets: SecretsConfig,
    pub command: CommandConfig,
    pub delivery: DeliveryConfig,
    pub projector: ProjectorConfig,
    pub query: QueryConfig,
    pub telemetry: TelemetryConfig,
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
        let stack: StackConfig = figment.extract().map_err(extract_error)?;
        stack.validate()?;
        let projector: ProjectorConfig = figment.extract().map_err(extract_error)?;
        if stack.log_max_age_days > 0 && stack.log_max_age_days < projector.retention_days {
            return Err(ConfigError(format!(
                "HERALD_LOG_MAX_AGE_DAYS ({}) is shorter than HERALD_RETENTION_DAYS ({}): the \
                 read models could show history the log no longer holds, and a rebuild would \
                 lose it; keep the log at least as long (or 0: for ever)",
                stack.log_max_age_days, projector.retention_days
            )));
        }
        let telemetry: TelemetryConfig = figment.extract().map_err(extract_error)?;
        telemetry.validate()?;
        Ok(Self {
            stack,
            secrets: figment.extract().map_err(extract_error)?,
            command: figment.extract().map_err(extract_error)?,
            delivery: figment.extract().map_err(extract_error)?,
            projector,
            query: figment.extract().map_err(extract_error)?,
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_replicas_default_to_one_and_accept_one_to_five() {
        let config = HeraldConfig::from_figment(Figment::new()).expect("defaults are valid");
        assert_eq!(config.stack.log_replicas, 1);
        for replicas in 1..=5 {
            let config =
                HeraldConfig::from_figment(Figment::new().merge(("log_replicas", replicas)))
                    .expect("valid replica count");
            assert_eq!(config.stack.log_replicas, replicas);
        }
    }

    #[test]
    fn log_replicas_outside_one_to_five_are_a_config_error() {
        for replicas in [0, 6, 7] {
            let error =
                HeraldConfig::from_figment(Figment::new().merge(("log_replicas", replicas)))
                    .expect_err("invalid replica count");
            assert!(error.to_string().contains("HERALD_LOG_REPLICAS"), "{error}");
        }
    }

    #[test]
    fn the_log_is_kept_at_least_as_long_as_the_read_models() {
        let config = |log_days: u32, view_days: u32| {
            HeraldConfig::from_figment(
                Figment::new()
                    .merge(("log_max_age_days", log_days))
                    .merge(("retention_days", view_days)),
            )
        };
        assert!(config(0, 30).is_ok(), "0 keeps the log for ever");
        assert!(config(30, 30).is_ok());
        assert!(config(90, 30).is_ok());
        let error = config(7, 30).expect_err("log shorter than the views");
        assert!(
            error.to_string().contains("HERALD_LOG_MAX_AGE_DAYS"),
            "{error}"
        );
    }

    #[test]
    fn trace_export_is_off_unless_an_endpoint_is_set() {
        let config = HeraldConfig::from_figment(Figment::new()).expect("defaults are valid");
        assert_eq!(config.telemetry.traces_url().expect("valid"), None);
        assert_eq!(config.telemetry.otlp_service_name, "herald");
        let empty = HeraldConfig::from_figment(Figment::new().merge(("otlp_endpoint", " ")))
            .expect("empty is off");
        assert_eq!(empty.telemetry.traces_url().expect("valid"), None);
        for (endpoint, traces) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://collector:4318/",
                "https://collector:4318/v1/traces",
            ),
        ] {
            let config =
                HeraldConfig::from_figment(Figment::new().merge(("otlp_endpoint", endpoint)))
                    .expect("valid endpoint");
            assert_eq!(
                config.telemetry.traces_url().expect("valid").as_deref(),
                Some(traces)
            );
        }
    }

    #[test]
    fn an_otlp_endpoint_that_is_no_http_url_is_a_config_error() {
        for endpoint in ["127.0.0.1:4318", "grpc://collector:4317", "not a url"] {
            let error =
                HeraldConfig::from_figment(Figment::new().merge(("otlp_endpoint", endpoint)))
                    .expect_err("invalid endpoint");
            assert!(
                error.to_string().contains("HERALD_OTLP_ENDPOINT"),
                "{error}"
            );
        }
    }

    #[test]
    fn log_linger_is_at_most_a_tenth_of_a_second() {
        let within = StackConfig {
            log_linger_ms: 100,
            ..StackConfig::default()
        };
        assert!(within.validate().is_ok());
        let beyond = StackConfig {
            log_linger_ms: 101,
            ..StackConfig::default()
        };
        let error = beyond.validate().expect_err("101 ms refused");
        assert!(
            error.to_string().contains("HERALD_LOG_LINGER_MS"),
            "{error}"
        );
    }

    #[test]
    fn nats_url_may_list_several_servers() {
        let config = StackConfig {
            nats_url: "nats://127.0.0.1:1, nats://127.0.0.1:2,nats://127.0.0.1:3".to_owned(),
            ..StackConfig::default()
        };
        assert_eq!(
            config.nats_urls(),
            [
                "nats://127.0.0.1:1",
                "nats://127.0.0.1:2",
                "nats://127.0.0.1:3"
            ]
        );
    }
}
