//! Tenant API keys. Only a SHA-256 hash is stored: the keys are 256-bit random, so a slow
//! password hash would add latency to every request without adding safety.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "hk_";

/// A freshly generated key, shown to the operator exactly once.
pub struct ApiKey(String);

/// What the database keeps of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(pub [u8; 32]);

impl ApiKey {
    pub fn generate() -> Self {
        Self(random_token(PREFIX))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash::of(&self.0)
    }
}

/// `prefix` and 256 random bits (the OS's CSPRNG through `rand`), URL-safe: API keys and
/// portal session tokens.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl ApiKeyHash {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let first = ApiKey::generate();
        let second = ApiKey::generate();
        assert_ne!(first.expose(), second.expose());
        assert!(first.expose().starts_with(PREFIX));
        assert_eq!(first.hash(), ApiKeyHash::of(first.expose()));
        assert_ne!(first.hash(), second.hash());
    }
}
