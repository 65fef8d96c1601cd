//! `herald secrets …`: master keys for secrets at rest. `generate-key` prints a new key;
//! `rotate-key` makes a new key current (written into the key file) and seals every stored
//! secret again under it; `status` counts stored values per key, so an operator knows when
//! an old key may be dropped.

use crate::config::SecretsConfig;
use herald_rules::SecretsKeyring;
use herald_store::secrets_vault::{SecretsVault, VaultError};
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SecretsAdminError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("could not write the key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A new key, its id naming the day it was made.
pub fn generate_key() -> String {
    SecretsKeyring::generate_key(&format!("k{}", chrono::Utc::now().format("%Y%m%d")))
}

/// What a rotation did.
pub struct Rotation {
    /// The key that seals from now on.
    pub current_key_id: String,
    /// Whether this run made that key (a key file) or found it first in `HERALD_SECRETS_KEY`.
    pub generated: bool,
    pub report: herald_store::endpoints::ResealReport,
    /// Stored values per key after the rotation.
    pub values_by_key: Vec<(String, i64)>,
}

/// With a key file: puts a new key at its top, so that every process reading the file seals
/// with it and opens with every key. With `HERALD_SECRETS_KEY`: the operator put the new key
/// first already. Either way every stored value is then sealed again under the current key.
pub async fn rotate_key(
    config: &SecretsConfig,
    pool: &sqlx::PgPool,
) -> Result<Rotation, SecretsAdminError> {
    let vault = config.vault()?;
    let generated = match vault.file() {
        Some(path) => {
            prepend_key(path, &generate_key())?;
            vault.reload()?;
            true
        }
        None => false,
    };
    let report = herald_store::endpoints::reseal(pool, &vault).await?;
    Ok(Rotation {
        current_key_id: vault.keyring().current_key_id().to_owned(),
        generated,
        report,
        values_by_key: herald_store::endpoints::values_by_key(pool).await?,
    })
}

/// Stored values per key, and the keys of the keyring none of them uses.
pub async fn status(
    config: &SecretsConfig,
    pool: &sqlx::PgPool,
) -> Result<(Vec<(String, i64)>, Vec<String>), SecretsAdminError> {
    let vault: std::sync::Arc<SecretsVault> = config.vault()?;
    let counts = herald_store::endpoints::values_by_key(pool).await?;
    let unused = vault
        .keyring()
        .key_ids()
        .skip(1)
        .filter(|key_id| !counts.iter().any(|(used, _)| used == key_id))
        .map(str::to_owned)
        .collect();
    Ok((counts, unused))
}

/// Writes `key` above the file's keys: to a new file beside it, renamed over it, so that a
/// reader never sees half a file.
fn prepend_key(path: &Path, key: &str) -> Result<(), SecretsAdminError> {
    let failed = |source| SecretsAdminError::Write {
        path: path.display().to_string(),
        source,
    };
    let existing = std::fs::read_to_string(path).map_err(failed)?;
    let (comments, keys): (Vec<&str>, Vec<&str>) = existing
        .lines()
        .partition(|line| line.trim_start().starts_with('#'));
    let mut text = String::new();
    for line in comments.iter().chain(std::iter::once(&key)).chain(&keys) {
        text.push_str(line);
        text.push('\n');
    }
    let temporary = path.with_extension("key.new");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    std::fs::rename(&temporary, path).map_err(failed)
}
