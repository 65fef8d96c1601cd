//! Secrets at rest: values Herald must read back (endpoint signing secrets, custom header
//! values) are sealed with AES-256-GCM under a master key before they reach Postgres.
//!
//! A sealed value is `sealed:v1:<key_id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id
//! travels with the value so that the master key can be replaced: the keyring holds the
//! current key (which seals) and older ones (which still open), and a rotation re-seals every
//! value under the current key before the old one is dropped. The value is bound to where it
//! is stored (`context`, e.g. `endpoint:<id>:secret`): a sealed value copied into another
//! row or column does not open there.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

const SEALED_PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;
const MAX_KEY_ID_LENGTH: usize = 32;

/// Master keys: the first seals, every one opens. `Debug` never shows key material.
pub struct SecretsKeyring {
    keys: Vec<MasterKey>,
}

struct MasterKey {
    id: String,
    key: LessSafeKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidKeyring {
    #[error("no master key given")]
    Empty,
    #[error("key {0}: must be `<key_id>:<base64 of 32 bytes>`")]
    Malformed(usize),
    #[error("key {0}: the id must be 1-32 characters of a-z, 0-9, `_` or `-`")]
    BadId(usize),
    #[error("key {0}: must decode to 32 bytes")]
    BadKey(usize),
    #[error("key id `{0}` appears twice")]
    DuplicateId(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the stored value is not sealed")]
    NotSealed,
    #[error("the stored value was sealed under master key `{0}`, which the keyring lacks")]
    UnknownKey(String),
    #[error(
        "the stored value does not open under its master key (damaged, or moved from elsewhere)"
    )]
    Corrupt,
}

impl SecretsKeyring {
    /// Keys as `<key_id>:<base64>` separated by commas, spaces or new lines, the current one
    /// first. Lines starting with `#` are comments (for key files).
    pub fn parse(text: &str) -> Result<Self, InvalidKeyring> {
        let mut keys: Vec<MasterKey> = Vec::new();
        let entries = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let number = index + 1;
            let (id, encoded) = entry
                .split_once(':')
                .ok_or(InvalidKeyring::Malformed(number))?;
            if !is_key_id(id) {
                return Err(InvalidKeyring::BadId(number));
            }
            let bytes = STANDARD
                .decode(encoded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
                .map_err(|_| InvalidKeyring::BadKey(number))?;
            if bytes.len() != KEY_BYTES {
                return Err(InvalidKeyring::BadKey(number));
            }
            if keys.iter().any(|key| key.id == id) {
                return Err(InvalidKeyring::DuplicateId(id.to_owned()));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| InvalidKeyring::BadKey(number))?;
            keys.push(MasterKey {
                id: id.to_owned(),
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            return Err(InvalidKeyring::Empty);
        }
        Ok(Self { keys })
    }

    /// A new master key as `<key_id>:<base64>`, its id made of `prefix` and random hex.
    pub fn generate_key(prefix: &str) -> String {
        let mut bytes = [0u8; KEY_BYTES + 4];
        fill_random(&mut bytes);
        let suffix: String = bytes[KEY_BYTES..]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("{prefix}{suffix}:{}", STANDARD.encode(&bytes[..KEY_BYTES]))
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// Seals `plaintext` under the current key, bound to `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let current = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut in_out = plaintext.as_bytes().to_vec();
        current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .expect("AES-GCM seals any input shorter than 64 GiB");
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        format!(
            "{SEALED_PREFIX}{}:{}",
            current.id,
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// The plaintext of a value [`Self::seal`] made with `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, OpenError> {
        let (key_id, encoded) = sealed_parts(sealed).ok_or(OpenError::NotSealed)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| OpenError::Corrupt)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Corrupt)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| OpenError::Corrupt)?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| OpenError::Corrupt)
    }

    /// Whether `stored` is sealed under the current key (a rotation leaves it alone).
    pub fn is_current(&self, stored: &str) -> bool {
        sealed_key_id(stored) == Some(self.current_key_id())
    }
}

/// The id of the master key a stored value was sealed under; `None` for a plaintext value.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    sealed_parts(stored).map(|(key_id, _)| key_id)
}

fn sealed_parts(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(SEALED_PREFIX)?.split_once(':')
}

fn is_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LENGTH).contains(&id.len())
        && id.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-'
        })
}

fn fill_random(bytes: &mut [u8]) {
    // The OS's CSPRNG; it failing leaves no safe way to seal.
    SystemRandom::new()
        .fill(bytes)
        .expect("the operating system's random number generator works");
}

impl fmt::Debug for SecretsKeyring {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SecretsKeyring")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keyring(specs: &[&str]) -> SecretsKeyring {
        SecretsKeyring::parse(&specs.join(",")).expect("valid keyring")
    }

    #[test]
    fn refuses_malformed_keyrings() {
        assert_eq!(
            SecretsKeyring::parse(" \n# only a comment\n").err(),
            Some(InvalidKeyring::Empty)
        );
        assert_eq!(
            SecretsKeyring::parse("nokey").err(),
            Some(InvalidKeyring::Malformed(1))
        );
        let good = SecretsKeyring::generate_key("k");
        assert_eq!(
            SecretsKeyring::parse(&format!("{good},UPPER:{}", STANDARD.encode([0u8; 32]))).err(),
            Some(InvalidKeyring::BadId(2))
        );
        assert_eq!(
            SecretsKeyring::parse(&format!("short:{}", STANDARD.encode([0u8; 16]))).err(),
            Some(InvalidKeyring::BadKey(1))
        );
        let id = good.split_once(':').expect("spec").0;
        assert_eq!(
            SecretsKeyring::parse(&format!("{good}\n{good}")).err(),
            Some(InvalidKeyring::DuplicateId(id.to_owned()))
        );
    }

    #[test]
    fn key_material_never_shows_in_debug() {
        let spec = SecretsKeyring::generate_key("debug");
        let material = spec.split_once(':').expect("spec").1;
        let shown = format!("{:?}", keyring(&[&spec]));
        assert!(
            shown.contains("debug") && !shown.contains(material),
            "{shown}"
        );
    }

    #[test]
    fn older_keys_open_and_the_first_seals() {
        let old = SecretsKeyring::generate_key("old");
        let new = SecretsKeyring::generate_key("new");
        let before = keyring(&[&old]);
        let sealed = before.seal("whsec_value", "endpoint:1:secret");
        assert!(before.is_current(&sealed));
        let after = keyring(&[&new, &old]);
        assert!(!after.is_current(&sealed));
        assert_eq!(
            after.open(&sealed, "endpoint:1:secret").as_deref(),
            Ok("whsec_value")
        );
        let resealed = after.seal("whsec_value", "endpoint:1:secret");
        assert!(after.is_current(&resealed));
        assert_eq!(
            before.open(&resealed, "endpoint:1:secret"),
            Err(OpenError::UnknownKey(after.current_key_id().to_owned()))
        );
        assert_eq!(
            after.open("whsec_plain", "endpoint:1:secret"),
            Err(OpenError::NotSealed)
        );
    }

    proptest! {
        #[test]
        fn sealed_values_open_only_where_they_were_sealed(
            plaintext in ".{0,200}", context in "[a-z0-9:]{1,40}", other in "[a-z0-9:]{1,40}",
            flip in any::<usize>(),
        ) {
            let keys = keyring(&[&SecretsKeyring::generate_key("p")]);
            let sealed = keys.seal(&plaintext, &context);
            if plaintext.len() >= 8 {
                prop_assert!(!sealed.contains(&plaintext));
            }
            prop_assert_eq!(keys.open(&sealed, &context), Ok(plaintext.clone()));
            if other != context {
                prop_assert_eq!(keys.open(&sealed, &other), Err(OpenError::Corrupt));
            }
            // Any damaged character of the ciphertext makes it unopenable.
            let mut damaged = sealed.clone().into_bytes();
            let start = sealed.rfind(':').expect("separator") + 1;
            let index = start + flip % (damaged.len() - start);
            damaged[index] = if damaged[index] == b'A' { b'B' } else { b'A' };
            let damaged = String::from_utf8(damaged).expect("ascii");
            if damaged != sealed {
                prop_assert!(keys.open(&damaged, &context).is_err());
            }
            // The same plaintext seals differently each time (random nonce).
            prop_assert_ne!(keys.seal(&plaintext, &context), sealed);
        }
    }
}
