//! Idempotent ingest: the first request with a key claims it for its event id; a repeat with
//! the same request gets that id back, one with a different request is a conflict. Requests
//! are compared by meaning (JSON key order and spacing do not matter).
//!
//! A claim is committed before the event is appended and is only marked appended once the log
//! has acknowledged it, so a request that died in between leaves a claim that is not known to
//! be in the log. Its repeat appends the event again under the claimed event id and with that
//! id as the log's de-duplication id: the answer is 202 only once the event is in the log, and
//! there is never a second event for one key (ADR 0010). Claims are committed synchronously
//! whatever the server's `synchronous_commit`, because a lost claim would let a repeat create
//! a second event.

use herald_schemas::{EventId, TenantId};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::mpsc;

/// What happened when a request tried to claim its idempotency key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new; the caller must append this event.
    Claimed,
    /// The same request came before, as this event. Unless `appended`, that request may have
    /// died before the log acknowledged the event: the caller must append it (again).
    Repeated { event_id: EventId, appended: bool },
    /// The key was used for a different request.
    Conflict,
}

pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// `schedule` is anything else that changes what the request asks for (delivery window).
    pub fn of(
        event_type: &str,
        payload: &RawValue,
        target_endpoints: &Option<Vec<uuid::Uuid>>,
        schedule: &str,
    ) -> Self {
        // serde_json's Value keeps object keys sorted, so re-serializing canonicalizes order
        // and whitespace.
        let canonical_payload = serde_json::from_str::<serde_json::Value>(payload.get())
            .map(|value| value.to_string())
            .unwrap_or_else(|_| payload.get().to_owned());
        let mut targets = target_endpoints.clone();
        if let Some(targets) = targets.as_mut() {
            targets.sort();
            targets.dedup();
        }
        let mut hasher = Sha256::new();
        hasher.update(event_type.as_bytes());
        hasher.update([0]);
        hasher.update(canonical_payload.as_bytes());
        hasher.update([0]);
        hasher.update(format!("{targets:?}").as_bytes());
        hasher.update([0]);
        hasher.update(schedule.as_bytes());
        Self(hasher.finalize().into())
    }
}

/// Where claims are written and appends confirmed.
#[derive(Clone)]
pub struct IdempotencyKeys {
    /// Commits synchronously (see the module documentation).
    durable: PgPool,
    confirmations: mpsc::UnboundedSender<(TenantId, String)>,
}

/// Confirmations are written in batches of at most this many keys.
const CONFIRMATION_BATCH: usize = 1_000;

impl IdempotencyKeys {
    /// Needs a Tokio runtime: starts the task that records confirmed appends.
    pub fn new(pool: &PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "on")]);
        let durable = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        let (confirmations, pending) = mpsc::unbounded_channel();
        tokio::spawn(record_confirmations(pool.clone(), pending));
        Self {
            durable,
            confirmations,
        }
    }

    pub async fn claim(
        &self,
        tenant_id: TenantId,
        key: &str,
        fingerprint: &RequestFingerprint,
        event_id: EventId,
    ) -> Result<Claim, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, event_id, created_at) \
             VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id.as_uuid())
        .bind(key)
        .bind(&fingerprint.0[..])
        .bind(event_id.as_uuid())
        .execute(&self.durable)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Claimed);
        }
        // An event the read model holds is in the log even if its confirmation was lost; this
        // matters past the log's duplicate window, where appending again would keep a copy.
        let (request_hash, original, appended): (Vec<u8>, uuid::Uuid, bool) = sqlx::query_as(
            "SELECT k.request_hash, k.event_id, \
               k.appended_at IS NOT NULL OR EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = k.event_id) \
             FROM idempotency_keys AS k WHERE k.tenant_id = $1 AND k.idempotency_key = $2",
        )
        .bind(tenant_id.as_uuid())
        .bind(key)
        .fetch_one(&self.durable)
        .await?;
        Ok(if request_hash == fingerprint.0 {
            Claim::Repeated {
                event_id: EventId(original),
                appended,
            }
        } else {
            Claim::Conflict
        })
    }

    /// Notes that the key's event is in the log, so repeats need not append it again. Written
    /// in the background and in batches: a confirmation lost to a crash only costs a repeat an
    /// append that the log de-duplicates.
    pub fn confirm_appended(&self, tenant_id: TenantId, key: String) {
        let _ = self.confirmations.send((tenant_id, key));
    }
}

async fn record_confirmations(
    pool: PgPool,
    mut pending: mpsc::UnboundedReceiver<(TenantId, String)>,
) {
    let mut batch = Vec::with_capacity(CONFIRMATION_BATCH);
    while pending.recv_many(&mut batch, CONFIRMATION_BATCH).await > 0 {
        let (tenants, keys): (Vec<uuid::Uuid>, Vec<String>) = batch
            .drain(..)
            .map(|(tenant_id, key)| (tenant_id.as_uuid(), key))
            .unzip();
        let confirmed = sqlx::query(
            "UPDATE idempotency_keys AS k SET appended_at = now() \
             FROM UNNEST($1::uuid[], $2::text[]) AS c(tenant_id, idempotency_key) \
             WHERE k.tenant_id = c.tenant_id AND k.idempotency_key = c.idempotency_key \
               AND k.appended_at IS NULL",
        )
        .bind(&tenants)
        .bind(&keys)
        .execute(&pool)
        .await;
        if let Err(error) = confirmed {
            tracing::warn!(%error, keys = keys.len(), "appends not confirmed; repeats will append again (deduplicated)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("json")
    }

    #[test]
    fn fingerprints_ignore_formatting_but_not_meaning() {
        let a = RequestFingerprint::of("t", &raw(r#"{"a":1,"b":[1,2]}"#), &None, "");
        let b = RequestFingerprint::of("t", &raw(r#"{ "b": [1, 2], "a": 1 }"#), &None, "");
        let c = RequestFingerprint::of("t", &raw(r#"{"a":2,"b":[1,2]}"#), &None, "");
        let d = RequestFingerprint::of("u", &raw(r#"{"a":1,"b":[1,2]}"#), &None, "");
        let e = RequestFingerprint::of("t", &raw(r#"{"a":1,"b":[1,2]}"#), &None, "later");
        assert_ne!(a.0, e.0);
        assert_eq!(a.0, b.0);
        assert_ne!(a.0, c.0);
        assert_ne!(a.0, d.0);
    }
}
