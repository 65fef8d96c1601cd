//! The master keys that seal secrets at rest ([`herald_rules::sealing`]), as a running process
//! holds them. Keys come from `HERALD_SECRETS_KEY` or from a key file; with a file, a value
//! sealed under a key this process does not know yet makes it read the file again, so a
//! rotation (`herald secrets rotate-key`, which writes the new key into the file first) needs
//! no restart of the processes sharing that file.

use herald_rules::sealing::{InvalidKeyring, OpenError, SecretsKeyring};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub struct SecretsVault {
    file: Option<PathBuf>,
    keyring: RwLock<Arc<SecretsKeyring>>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the secrets key file {path} cannot be read: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Invalid {
        origin: String,
        source: InvalidKeyring,
    },
}

impl SecretsVault {
    /// Keys given inline (`HERALD_SECRETS_KEY`).
    pub fn from_text(text: &str) -> Result<Arc<Self>, VaultError> {
        let keyring = SecretsKeyring::parse(text).map_err(|source| VaultError::Invalid {
            origin: "HERALD_SECRETS_KEY".to_owned(),
            source,
        })?;
        Ok(Arc::new(Self {
            file: None,
            keyring: RwLock::new(Arc::new(keyring)),
        }))
    }

    /// Keys read from `path` (`HERALD_SECRETS_KEY_FILE`), one per line, the current one first.
    pub fn from_file(path: &Path) -> Result<Arc<Self>, VaultError> {
        let keyring = read_key_file(path)?;
        Ok(Arc::new(Self {
            file: Some(path.to_owned()),
            keyring: RwLock::new(Arc::new(keyring)),
        }))
    }

    pub fn keyring(&self) -> Arc<SecretsKeyring> {
        match self.keyring.read() {
            Ok(keyring) => keyring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key file, when keys come from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        self.keyring().seal(plaintext, context)
    }

    /// Opens a stored value; a key it does not know sends it back to the key file once.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, OpenError> {
        match self.keyring().open(stored, context) {
            Err(OpenError::UnknownKey(key_id)) => match self.reload() {
                Ok(true) => self.keyring().open(stored, context),
                Ok(false) => Err(OpenError::UnknownKey(key_id)),
                Err(error) => {
                    tracing::error!(%error, "could not read the secrets key file again");
                    Err(OpenError::UnknownKey(key_id))
                }
            },
            other => other,
        }
    }

    /// Reads the key file again; `false` when keys are not from a file.
    pub fn reload(&self) -> Result<bool, VaultError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let keyring = read_key_file(path)?;
        tracing::info!(
            current_key = keyring.current_key_id(),
            "secrets key file read again"
        );
        match self.keyring.write() {
            Ok(mut held) => *held = Arc::new(keyring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keyring),
        }
        Ok(true)
    }
}

fn read_key_file(path: &Path) -> Result<SecretsKeyring, VaultError> {
    let text = std::fs::read_to_string(path).map_err(|source| VaultError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    SecretsKeyring::parse(&text).map_err(|source| VaultError::Invalid {
        origin: path.display().to_string(),
        source,
    })
}

impl std::fmt::Debug for SecretsVault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretsVault")
            .field("file", &self.file)
            .field("keyring", &self.keyring())
            .finish()
    }
}
