//! Idempotent ingest: the first request with a key claims it for its event id; a repeat with
//! the same request gets that id back, one with a different request is a conflict. Requests
//! are compared by meaning (JSON key order and spacing do not matter).

use herald_schemas::{EventId, TenantId};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// What happened when a request tried to claim its idempotency key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new; the caller must publish this event (or release the key).
    Claimed,
    /// The same request was accepted before as this event.
    Replayed(EventId),
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

pub async fn claim(
    pool: &PgPool,
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
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let (request_hash, original): (Vec<u8>, uuid::Uuid) = sqlx::query_as(
        "SELECT request_hash, event_id FROM idempotency_keys WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(key)
    .fetch_one(pool)
    .await?;
    Ok(if request_hash == fingerprint.0 {
        Claim::Replayed(EventId(original))
    } else {
        Claim::Conflict
    })
}

/// Gives a claimed key back when its event could not be appended, so a retry can succeed.
pub async fn release(
    pool: &PgPool,
    tenant_id: TenantId,
    key: &str,
    event_id: EventId,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idempotency_key = $2 AND event_id = $3")
        .bind(tenant_id.as_uuid())
        .bind(key)
        .bind(event_id.as_uuid())
        .execute(pool)
        .await
        .map(|_| ())
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
