//! Configuration of the command (ingest) service (environment variables `HERALD_<FIELD>`).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct CommandConfig {
    /// Bearer token for `/admin/v1`; admin routes answer 401 to everyone when unset.
    pub admin_token: Option<SecretString>,
    /// CIDRs endpoint URLs may resolve to although they are loopback/private/link-local.
    pub allowed_target_cidrs: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a tenant's routing table is trusted without a change notice from the log.
    pub routing_cache_ttl_ms: u64,
    /// Refuse `http://` endpoint URLs (production); off by default so local receivers work.
    pub require_https: bool,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            allowed_target_cidrs: String::new(),
            max_body_bytes: 256 * 1024,
            routing_cache_ttl_ms: 30_000,
            require_https: false,
        }
    }
}
