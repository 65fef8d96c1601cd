//! Pure rules that more than one Herald service applies, so that services need not depend on
//! each other to share them (they meet only through the log): Standard Webhooks signing
//! secrets, ed25519 keys and signatures (command creates them, delivery signs), sealing of
//! secrets at rest (command seals, delivery opens), which addresses receivers
//! may use (command checks endpoint URLs, delivery checks every connection), and token buckets
//! (delivery paces endpoints, query paces replay requests), and which endpoints an event type
//! reaches (command routes events, replays from the log route them again), Herald's own `herald.…`
//! types only to endpoints that list them. Nothing here does I/O.

pub mod rate_limit;
pub mod routing;
pub mod sealing;
pub mod signature;
pub mod target_guard;

pub use sealing::SecretsKeyring;
pub use signature::{Ed25519SigningKey, SigningSecret, WebhookSigner};
pub use target_guard::TargetGuard;
