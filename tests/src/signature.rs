//! A receiver-side Standard Webhooks verifier, written independently of Herald's signer so
//! that the tests check the wire format, not the implementation against itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// True when one of the space-separated `v1,` signatures matches.
pub fn verify(
    secret: &str,
    webhook_id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{webhook_id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .any(|candidate| candidate == expected)
}
