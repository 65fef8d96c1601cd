//! The sealed columns of `endpoints`: where each value is sealed (its context), custom
//! headers as stored, and the statements that seal stored values again (plaintext from an
//! older release, or values under an older master key) or erase expired previous secrets.

use crate::secrets_vault::SecretsVault;
use herald_rules::sealing::OpenError;
use herald_schemas::EndpointId;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgPool;

/// Where an endpoint's signing secret is sealed; the previous secret shares it, since a
/// rotation moves the current one there.
pub(super) fn secret_context(endpoint_id: EndpointId) -> String {
    format!("endpoint:{endpoint_id}:secret")
}

pub(super) fn header_context(endpoint_id: EndpointId, name: &str) -> String {
    format!(
        "endpoint:{endpoint_id}:header:{}",
        name.to_ascii_lowercase()
    )
}

/// An endpoint's custom headers as stored: names in the clear, values sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHeaders(pub(super) Vec<SealedHeader>);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SealedHeader {
    pub(super) name: String,
    pub(super) value: String,
}

impl SealedHeaders {
    /// The names, as the tenant wrote them, in the order they were first set.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|header| header.name.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets header `name` (names compare case-insensitively) to `value`, sealed.
    pub fn set(&mut self, vault: &SecretsVault, endpoint_id: EndpointId, name: &str, value: &str) {
        let sealed = vault.seal(value, &header_context(endpoint_id, name));
        match self
            .0
            .iter_mut()
            .find(|header| header.name.eq_ignore_ascii_case(name))
        {
            Some(header) => {
                header.name = name.to_owned();
                header.value = sealed;
            }
            None => self.0.push(SealedHeader {
                name: name.to_owned(),
                value: sealed,
            }),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|header| !header.name.eq_ignore_ascii_case(name));
    }

    pub(super) fn stored(&self) -> Option<Json<&Self>> {
        (!self.0.is_empty()).then_some(Json(self))
    }
}

/// Erases previous secrets whose grace period has ended; returns how many.
#[tracing::instrument(level = "debug", skip_all, err)]
pub async fn erase_expired_previous_secrets(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE endpoints SET previous_secret = NULL, previous_secret_expires_at = NULL \
         WHERE previous_secret IS NOT NULL AND previous_secret_expires_at <= now()",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// What [`reseal`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Endpoints with at least one value sealed again.
    pub endpoints_resealed: u64,
    /// Values that could not be opened (sealed under a key the keyring lacks, or damaged).
    pub unreadable: u64,
}

#[derive(sqlx::FromRow)]
struct StoredSecrets {
    endpoint_id: uuid::Uuid,
    secret: String,
    previous_secret: Option<String>,
    custom_headers: Option<Json<SealedHeaders>>,
}

/// Seals every stored value that is not sealed under the vault's current key: plaintext
/// left by a Herald that stored secrets in the clear, and values sealed under an older key
/// (a master key rotation). Each endpoint is rewritten in its own short transaction.
#[tracing::instrument(skip_all, err)]
pub async fn reseal(pool: &PgPool, vault: &SecretsVault) -> Result<ResealReport, sqlx::Error> {
    let current = vault.keyring().current_key_id().to_owned();
    reseal_matching(pool, vault, &format!("sealed:v1:{current}:%")).await
}

/// Seals the values stored in the clear (by a Herald that did not seal them), leaving
/// sealed ones as they are, under whatever key.
#[tracing::instrument(skip_all, err)]
pub async fn reseal_plaintext(
    pool: &PgPool,
    vault: &SecretsVault,
) -> Result<ResealReport, sqlx::Error> {
    reseal_matching(pool, vault, "sealed:v1:%").await
}

/// Seals again every value that is not `LIKE keep`.
async fn reseal_matching(
    pool: &PgPool,
    vault: &SecretsVault,
    keep: &str,
) -> Result<ResealReport, sqlx::Error> {
    let mut report = ResealReport::default();
    let candidates: Vec<StoredSecrets> = sqlx::query_as(
        "SELECT endpoint_id, secret, previous_secret, custom_headers FROM endpoints \
         WHERE secret NOT LIKE $1 \
            OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE $1) \
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(custom_headers) h \
                       WHERE h->>'value' NOT LIKE $1)",
    )
    .bind(keep)
    .fetch_all(pool)
    .await?;
    for stored in candidates {
        let endpoint_id = EndpointId(stored.endpoint_id);
        let context = secret_context(endpoint_id);
        let mut unreadable = 0;
        let mut again = |value: &str, context: &str| -> Option<String> {
            if like(value, keep) {
                return Some(value.to_owned());
            }
            match vault.open(value, context) {
                Ok(plaintext) => Some(vault.seal(&plaintext, context)),
                Err(OpenError::NotSealed) => Some(vault.seal(value, context)),
                Err(error) => {
                    tracing::error!(%endpoint_id, %error, "a stored secret cannot be sealed again");
                    unreadable += 1;
                    None
                }
            }
        };
        let secret = again(&stored.secret, &context);
        let previous = stored
            .previous_secret
            .as_deref()
            .map(|value| again(value, &context));
        let mut headers = stored
            .custom_headers
            .map(|headers| headers.0)
            .unwrap_or_default();
        let mut headers_ok = true;
        for header in &mut headers.0 {
            match again(&header.value, &header_context(endpoint_id, &header.name)) {
                Some(value) => header.value = value,
                None => headers_ok = false,
            }
        }
        report.unreadable += unreadable;
        let previous_readable = !matches!(previous, Some(None));
        let Some(secret) = secret.filter(|_| previous_readable && headers_ok) else {
            continue;
        };
        // Written only if nothing changed meanwhile (a rotation or update re-seals anyway).
        let written = sqlx::query(
            "UPDATE endpoints SET secret = $2, previous_secret = $3, custom_headers = $4 \
             WHERE endpoint_id = $1 AND secret = $5 \
               AND previous_secret IS NOT DISTINCT FROM $6",
        )
        .bind(stored.endpoint_id)
        .bind(&secret)
        .bind(previous.flatten())
        .bind(headers.stored())
        .bind(&stored.secret)
        .bind(&stored.previous_secret)
        .execute(pool)
        .await?
        .rows_affected();
        report.endpoints_resealed += written;
    }
    Ok(report)
}

/// How many stored values are sealed under each master key (`plaintext` for values not
/// sealed at all): what a rotation must bring to the current key before an old one goes.
pub async fn values_by_key(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT CASE WHEN value LIKE 'sealed:v1:%' THEN split_part(value, ':', 3) \
                     ELSE 'plaintext' END AS key_id, count(*) \
         FROM (SELECT secret AS value FROM endpoints \
               UNION ALL SELECT previous_secret FROM endpoints WHERE previous_secret IS NOT NULL \
               UNION ALL SELECT h->>'value' FROM endpoints, \
                 jsonb_array_elements(COALESCE(custom_headers, '[]'::jsonb)) h) v \
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await
}

/// `value LIKE pattern` for the patterns [`reseal_matching`] uses: a prefix and `%`.
fn like(value: &str, pattern: &str) -> bool {
    value.starts_with(pattern.trim_end_matches('%'))
}
