//! Standard Webhooks signing: `webhook-signature: v1,<base64(HMAC-SHA256(secret,
//! "<webhook-id>.<webhook-timestamp>.<body>"))>`, secrets written `whsec_<base64>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
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
