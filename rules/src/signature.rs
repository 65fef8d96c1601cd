//! Standard Webhooks signing of `"<webhook-id>.<webhook-timestamp>.<body>"`: symmetric
//! `v1,<base64 HMAC-SHA256>` with secrets written `whsec_<base64>`, or asymmetric
//! `v1a,<base64 ed25519 signature>` with private keys `whsk_<base64>` that only Herald holds
//! and public keys `whpk_<base64>` that receivers verify with.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::Sha256;
use std::fmt;

const SECRET_PREFIX: &str = "whsec_";
/// Standard Webhooks asks for 24 to 64 bytes of key material.
/// Exactly the texts [`SigningSecret::parse`] accepts: `whsec_` and canonical standard
/// base64 (padded, unused bits zero) of 24-64 bytes, for the OpenAPI document.
pub const SECRET_PATTERN: &str = "^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/][AQgw]==)?|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)$";

const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
const GENERATED_SECRET_BYTES: usize = 32;

/// An endpoint's signing key. `Debug` never shows the key material.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSecret {
    #[error("must start with `whsec_`")]
    MissingPrefix,
    #[error("must be `whsec_` followed by standard base64")]
    NotBase64,
    #[error("must decode to 24-64 bytes, got {0}")]
    WrongLength(usize),
}

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(InvalidSecret::MissingPrefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| InvalidSecret::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(InvalidSecret::WrongLength(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The `whsec_…` form shown to the endpoint's owner.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

const PRIVATE_KEY_PREFIX: &str = "whsk_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
const ED25519_SEED_BYTES: usize = 32;

/// An endpoint's ed25519 key pair (`v1a` signatures). Written `whsk_<base64(seed ‖ public
/// key)>`, the 64-byte form most ed25519 libraries call the secret key. `Debug` shows only
/// the public key.
pub struct Ed25519SigningKey {
    pair: Ed25519KeyPair,
    seed: [u8; ED25519_SEED_BYTES],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPrivateKey {
    #[error("must be `whsk_` followed by the standard base64 of 64 bytes")]
    Malformed,
    #[error("the public half does not belong to the private half")]
    Mismatched,
}

impl Ed25519SigningKey {
    pub fn generate() -> Self {
        let mut seed = [0u8; ED25519_SEED_BYTES];
        rand::thread_rng().fill_bytes(&mut seed);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are a seed");
        Self { pair, seed }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidPrivateKey> {
        let bytes = text
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .filter(|bytes| bytes.len() == 2 * ED25519_SEED_BYTES)
            .ok_or(InvalidPrivateKey::Malformed)?;
        let (seed, public) = bytes.split_at(ED25519_SEED_BYTES);
        let pair = Ed25519KeyPair::from_seed_and_public_key(seed, public)
            .map_err(|_| InvalidPrivateKey::Mismatched)?;
        let mut kept = [0u8; ED25519_SEED_BYTES];
        kept.copy_from_slice(seed);
        Ok(Self { pair, seed: kept })
    }

    /// The `whsk_…` form, for sealed storage only: it is never shown to anyone.
    pub fn expose(&self) -> String {
        let mut bytes = self.seed.to_vec();
        bytes.extend_from_slice(self.pair.public_key().as_ref());
        format!("{PRIVATE_KEY_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The `whpk_…` key receivers verify `v1a` signatures with.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.pair.public_key().as_ref())
        )
    }

    /// The `v1a,<base64>` signature of one message.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = Vec::with_capacity(webhook_id.len() + body.len() + 24);
        message.extend_from_slice(webhook_id.as_bytes());
        message.push(b'.');
        message.extend_from_slice(timestamp.to_string().as_bytes());
        message.push(b'.');
        message.extend_from_slice(body);
        format!("v1a,{}", STANDARD.encode(self.pair.sign(&message).as_ref()))
    }
}

impl fmt::Debug for Ed25519SigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Ed25519SigningKey({})", self.public_key())
    }
}

/// What signs an endpoint's deliveries: its HMAC secret or its ed25519 key.
#[derive(Debug)]
pub enum WebhookSigner {
    Hmac(SigningSecret),
    Ed25519(Ed25519SigningKey),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSigner {
    #[error(transparent)]
    Secret(#[from] InvalidSecret),
    #[error(transparent)]
    PrivateKey(#[from] InvalidPrivateKey),
}

impl WebhookSigner {
    /// A stored secret: `whsk_…` is an ed25519 key, anything else an HMAC secret.
    pub fn parse(text: &str) -> Result<Self, InvalidSigner> {
        if text.starts_with(PRIVATE_KEY_PREFIX) {
            Ok(Self::Ed25519(Ed25519SigningKey::parse(text)?))
        } else {
            Ok(Self::Hmac(SigningSecret::parse(text)?))
        }
    }

    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Self::Hmac(secret) => secret.sign(webhook_id, timestamp, body),
            Self::Ed25519(key) => key.sign(webhook_id, timestamp, body),
        }
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SigningSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification's reference libraries.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_malformed_secrets() {
        assert_eq!(
            SigningSecret::parse("abc"),
            Err(InvalidSecret::MissingPrefix)
        );
        assert_eq!(
            SigningSecret::parse("whsec_***"),
            Err(InvalidSecret::NotBase64)
        );
        assert_eq!(
            SigningSecret::parse("whsec_AAAA"),
            Err(InvalidSecret::WrongLength(3))
        );
        assert!(!format!("{:?}", SigningSecret::generate()).contains("whsec_"));
    }

    #[test]
    fn ed25519_keys_round_trip_and_verify() {
        let key = Ed25519SigningKey::generate();
        let again = Ed25519SigningKey::parse(&key.expose()).expect("parses back");
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&key.expose()));
        let signature = key.sign("msg_1", 1614265330, b"{}");
        let encoded = signature.strip_prefix("v1a,").expect("v1a");
        let public = STANDARD
            .decode(key.public_key().trim_start_matches(PUBLIC_KEY_PREFIX))
            .expect("base64");
        let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
        verifier
            .verify(
                b"msg_1.1614265330.{}",
                &STANDARD.decode(encoded).expect("base64"),
            )
            .expect("verifies with the public key");
        assert!(verifier
            .verify(
                b"msg_1.1614265331.{}",
                &STANDARD.decode(encoded).expect("base64")
            )
            .is_err());
        // A private key whose public half was swapped is refused.
        let other = Ed25519SigningKey::generate();
        let mut bytes = STANDARD
            .decode(key.expose().trim_start_matches(PRIVATE_KEY_PREFIX))
            .expect("base64");
        bytes[32..].copy_from_slice(other.pair.public_key().as_ref());
        assert_eq!(
            Ed25519SigningKey::parse(&format!("whsk_{}", STANDARD.encode(bytes))).err(),
            Some(InvalidPrivateKey::Mismatched)
        );
        assert!(matches!(
            WebhookSigner::parse(&key.expose()),
            Ok(WebhookSigner::Ed25519(_))
        ));
    }

    fn secret_text() -> impl Strategy<Value = String> {
        let unanchored = SECRET_PATTERN.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(unanchored).expect("pattern")
    }

    proptest! {
        #[test]
        fn exposed_secrets_parse_back(bytes in proptest::collection::vec(any::<u8>(), 24..=64)) {
            let secret = SigningSecret(bytes);
            let pattern = regex::Regex::new(SECRET_PATTERN).expect("pattern");
            prop_assert!(pattern.is_match(&secret.expose()));
            prop_assert_eq!(SigningSecret::parse(&secret.expose()), Ok(secret));
        }

        /// The document's pattern promises nothing the parser refuses.
        #[test]
        fn every_text_of_the_documented_form_parses(text in secret_text()) {
            prop_assert!(SigningSecret::parse(&text).is_ok(), "{}", text);
        }

        /// Nor admits what it refuses: a text the parser takes fits the pattern.
        #[test]
        fn parsed_texts_fit_the_documented_form(bytes in proptest::collection::vec(any::<u8>(), 0..=80)) {
            let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(&bytes));
            let pattern = regex::Regex::new(SECRET_PATTERN).expect("pattern");
            prop_assert_eq!(pattern.is_match(&text), SigningSecret::parse(&text).is_ok(), "{}", text);
        }

        #[test]
        fn any_change_to_id_timestamp_or_body_changes_the_signature(
            id in "[a-z0-9_-]{1,40}", timestamp in 0i64..4_000_000_000, body in any::<Vec<u8>>(), flip in any::<usize>()
        ) {
            let secret = SigningSecret::generate();
            let original = secret.sign(&id, timestamp, &body);
            prop_assert_eq!(&original, &secret.sign(&id, timestamp, &body));
            prop_assert_ne!(&original, &secret.sign(&id, timestamp + 1, &body));
            prop_assert_ne!(&original, &secret.sign(&format!("{id}x"), timestamp, &body));
            if !body.is_empty() {
                let mut changed = body.clone();
                let index = flip % changed.len();
                changed[index] ^= 0x01;
                prop_assert_ne!(&original, &secret.sign(&id, timestamp, &changed));
            }
        }
    }
}
