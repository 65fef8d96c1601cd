//! Idempotent ingest: the first request with a key claims it for its event id; a repeat with
//! the same request gets that id back, one with a different request is a conflict. Requests
//! are compared by meaning (JSON key order and spacing do not matter).
//!
//! A claim is committed before the event is appended, so a request that died in between
//! leaves a claim whose event may not be in the log. A repeat of the request therefore appends
//! the event again, under the claimed event id and with that id as the log's de-duplication id,
//! unless the read model already holds the event: the answer is 202 only once the event is in
//! the log, and there is never a second event for one key (ADR 0010). Claims are committed
//! synchronously whatever the server's `synchronous_commit`, because a lost claim would let a
//! repeat create a second event; claims made at the same time share one commit.

use herald_http::ApiError;
use herald_schemas::{EventId, TenantId};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What happened when a request tried to claim its idempotency key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new; the caller must append this event.
    Claimed,
    /// The same request came before, as this event. Unless `appended` (the read model holds
    /// the event), that request may have died before the log acknowledged the event: the
    /// caller must append it (again).
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

/// Where claims are written.
#[derive(Clone)]
pub struct IdempotencyKeys {
    claims: mpsc::Sender<ClaimRequest>,
}

struct ClaimRequest {
    tenant_id: TenantId,
    key: String,
    fingerprint: [u8; 32],
    event_id: EventId,
    answer: oneshot::Sender<Result<Claim, ClaimError>>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the database is unavailable")]
    Unavailable,
    /// Shared by every claim of the batch that failed.
    #[error("idempotency keys could not be claimed: {0}")]
    Failed(Arc<sqlx::Error>),
    #[error("idempotency keys could not be claimed: the claim writer stopped")]
    WriterStopped,
}

impl From<ClaimError> for ApiError {
    fn from(error: ClaimError) -> Self {
        match error {
            ClaimError::Unavailable => {
                ApiError::Unavailable("the database is unavailable; retry later".to_owned())
            }
            ClaimError::Failed(_) | ClaimError::WriterStopped => ApiError::internal(&error),
        }
    }
}

/// Claims are written in batches of at most this many keys.
const CLAIM_BATCH: usize = 512;

impl IdempotencyKeys {
    /// Needs a Tokio runtime: starts the task that writes claims.
    pub fn new(pool: &PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "on")]);
        let durable = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        let (claims, requested) = mpsc::channel(CLAIM_BATCH * 8);
        tokio::spawn(write_claims(durable, requested));
        Self { claims }
    }

    /// Claims `key` for `event_id`. Claims made at the same time are committed together: one
    /// synchronous commit (one WAL flush) for all of them.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(%tenant_id, %event_id),
        err(level = "debug")
    )]
    pub async fn claim(
        &self,
        tenant_id: TenantId,
        key: &str,
        fingerprint: &RequestFingerprint,
        event_id: EventId,
    ) -> Result<Claim, ClaimError> {
        let (answer, answered) = oneshot::channel();
        let request = ClaimRequest {
            tenant_id,
            key: key.to_owned(),
            fingerprint: fingerprint.0,
            event_id,
            answer,
        };
        self.claims
            .send(request)
            .await
            .map_err(|_| ClaimError::WriterStopped)?;
        answered.await.map_err(|_| ClaimError::WriterStopped)?
    }
}

/// Writes claims one batch at a time: whatever arrived while the previous batch committed.
async fn write_claims(durable: PgPool, mut requested: mpsc::Receiver<ClaimRequest>) {
    let mut batch = Vec::with_capacity(CLAIM_BATCH);
    while requested.recv_many(&mut batch, CLAIM_BATCH).await > 0 {
        match claim_batch(&durable, &batch).await {
            Ok(claims) => {
                for (request, claim) in batch.drain(..).zip(claims) {
                    let _ = request.answer.send(claim);
                }
            }
            Err(error) => {
                let error = if herald_http::problem::database_unavailable(&error) {
                    ClaimError::Unavailable
                } else {
                    ClaimError::Failed(Arc::new(error))
                };
                for request in batch.drain(..) {
                    let _ = request.answer.send(Err(error.clone()));
                }
                // The database is down: those queued meanwhile would each wait out another
                // connection timeout; they get their 503 now.
                if let ClaimError::Unavailable = error {
                    while let Ok(request) = requested.try_recv() {
                        let _ = request.answer.send(Err(ClaimError::Unavailable));
                    }
                }
            }
        }
    }
}

/// Claims a batch's keys in one transaction (one synchronous commit).
#[tracing::instrument(level = "debug", skip_all, fields(claims = batch.len()), err(level = "warn"))]
async fn claim_batch(
    durable: &PgPool,
    batch: &[ClaimRequest],
) -> Result<Vec<Result<Claim, ClaimError>>, sqlx::Error> {
    let tenants: Vec<uuid::Uuid> = batch.iter().map(|r| r.tenant_id.as_uuid()).collect();
    let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
    let hashes: Vec<&[u8]> = batch.iter().map(|r| &r.fingerprint[..]).collect();
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|r| r.event_id.as_uuid()).collect();
    let mut transaction = durable.begin().await?;
    // Of several requests with one key (in this batch or before), the first claims it.
    let claimed: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash, event_id, created_at) \
         SELECT tenant_id, idempotency_key, request_hash, event_id, now() \
         FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::uuid[]) \
           AS t(tenant_id, idempotency_key, request_hash, event_id) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&tenants)
    .bind(&keys)
    .bind(&hashes)
    .bind(&event_ids)
    .fetch_all(&mut *transaction)
    .await?;
    if claimed.len() == batch.len() {
        transaction.commit().await?;
        return Ok(batch.iter().map(|_| Ok(Claim::Claimed)).collect());
    }
    // The event of a claim made before is in the log for sure once the read model holds it;
    // otherwise its request may have died before the append.
    let stored: Vec<(uuid::Uuid, String, Vec<u8>, uuid::Uuid, bool)> = sqlx::query_as(
        "SELECT k.tenant_id, k.idempotency_key, k.request_hash, k.event_id, \
           EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = k.event_id) \
         FROM idempotency_keys AS k \
         JOIN UNNEST($1::uuid[], $2::text[]) AS t(tenant_id, idempotency_key) \
           ON k.tenant_id = t.tenant_id AND k.idempotency_key = t.idempotency_key",
    )
    .bind(&tenants)
    .bind(&keys)
    .fetch_all(&mut *transaction)
    .await?;
    transaction.commit().await?;
    let stored: HashMap<(uuid::Uuid, &str), (&[u8], uuid::Uuid, bool)> = stored
        .iter()
        .map(|(tenant, key, hash, event_id, appended)| {
            (
                (*tenant, key.as_str()),
                (hash.as_slice(), *event_id, *appended),
            )
        })
        .collect();
    Ok(batch
        .iter()
        .map(|request| {
            match stored.get(&(request.tenant_id.as_uuid(), request.key.as_str())) {
                Some((_, event_id, _)) if *event_id == request.event_id.as_uuid() => {
                    Ok(Claim::Claimed)
                }
                Some((hash, event_id, appended)) if *hash == request.fingerprint => {
                    Ok(Claim::Repeated {
                        event_id: EventId(*event_id),
                        appended: *appended,
                    })
                }
                Some(_) => Ok(Claim::Conflict),
                // Removed by retention between the two statements: the repeat will claim it.
                None => Err(ClaimError::Unavailable),
            }
        })
        .collect())
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
