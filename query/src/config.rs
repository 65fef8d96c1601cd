//! Configuration of the query service (environment variables `HERALD_<FIELD>`). Its admin
//! routes take the operator token of the command service's configuration (`HERALD_ADMIN_TOKEN`).

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// The address users reach Herald at (`https://webhooks.example.com`), used in portal
    /// links. Unset: `http://` and the address the service listens on.
    pub public_url: Option<String>,
    /// How often endpoints' objectives are evaluated against the SLI rollups (one query
    /// process does it each round).
    pub slo_evaluation_ms: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            slo_evaluation_ms: 30_000,
        }
    }
}
