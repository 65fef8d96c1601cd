//! Configuration changes (tenants, endpoints) are committed to Postgres and must then be
//! appended to the log, where delivery workers, other command processes and outside
//! subscribers learn of them. Both cannot be one transaction, so the message is staged in
//! the `log_outbox` table in the same transaction as the change, appended right after the
//! commit and then removed. If the append fails, or the process dies in between, a relay
//! appends whatever is left. Appends carry the outbox id as `Nats-Msg-Id`, so the stream's
//! duplicate window keeps one copy when both the direct append and the relay get through.

use crate::{LogError, LogPublisher};
use herald_schemas::LogMessage;
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the relay looks for staged messages, and how old they must be before it takes
/// them (younger ones are still being appended by the request that staged them).
const RELAY_EVERY: Duration = Duration::from_secs(1);
const RELAY_AFTER_SECONDS: f64 = 2.0;
const RELAY_BATCH: i64 = 500;

/// A message committed to the outbox, not yet known to be in the log.
pub struct Staged {
    id: i64,
    subject: String,
    payload: Vec<u8>,
}

#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    publisher: LogPublisher,
}

impl Outbox {
    pub fn new(pool: PgPool, publisher: LogPublisher) -> Self {
        Self { pool, publisher }
    }

    /// Stages `message` for `subject` in the caller's transaction. A configuration change
    /// is also recorded in the tenant's audit trail (`config_changes`), in the same
    /// transaction, so that no change is missing from it.
    #[tracing::instrument(skip_all, fields(%subject), err)]
    pub async fn stage(
        connection: &mut PgConnection,
        subject: String,
        message: &LogMessage,
    ) -> Result<Staged, sqlx::Error> {
        let payload = message.encode();
        if let Some((tenant_id, actor)) = message.configuration() {
            let envelope: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            herald_store::config_changes::record(
                &mut *connection,
                tenant_id,
                message.type_name(),
                &serde_json::to_value(actor).unwrap_or_default(),
                &envelope["data"],
                chrono::Utc::now(),
            )
            .await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO log_outbox (subject, message, staged_at) VALUES ($1, $2, now()) RETURNING id",
        )
        .bind(&subject)
        .bind(&payload)
        .fetch_one(connection)
        .await?;
        Ok(Staged {
            id,
            subject,
            payload,
        })
    }

    /// Appends a staged message once its transaction has committed, and removes it from the
    /// outbox. A failure is only logged: the relay appends it later.
    #[tracing::instrument(skip_all, fields(outbox_id = staged.id, subject = %staged.subject))]
    pub async fn send(&self, staged: Staged) {
        let id = staged.id;
        if let Err(error) = self.append(staged).await {
            tracing::warn!(%error, outbox_id = id, "change not appended yet; the outbox relay will");
            return;
        }
        if let Err(error) = sqlx::query("DELETE FROM log_outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
        {
            tracing::warn!(%error, outbox_id = id, "appended change left in the outbox");
        }
    }

    async fn append(&self, staged: Staged) -> Result<(), LogError> {
        self.publisher
            .publish_bytes_once(
                staged.subject,
                staged.payload,
                format!("outbox-{}", staged.id),
            )
            .await
            .map(|_| ())
    }

    /// Appends, oldest first, every staged message the request that staged it did not append,
    /// until `shutdown`. Several processes may relay at once: each row is taken by one.
    pub async fn relay(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RELAY_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
            match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM log_outbox")
                .fetch_one(&self.pool)
                .await
            {
                Ok(staged) => herald_metrics::metrics().outbox_backlog(staged),
                Err(error) => tracing::debug!(%error, "could not count the outbox"),
            }
            match self.relay_once().await {
                Ok(0) => {}
                Ok(relayed) => tracing::info!(relayed, "outbox relayed changes to the log"),
                Err(error) => tracing::warn!(%error, "outbox relay failed; will try again"),
            }
        }
    }

    /// One pass of the relay; returns how many messages it appended.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn relay_once(&self) -> Result<usize, OutboxError> {
        let mut transaction = self.pool.begin().await?;
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, subject, message FROM log_outbox \
             WHERE staged_at < now() - $1 * interval '1 second' \
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(RELAY_AFTER_SECONDS)
        .bind(RELAY_BATCH)
        .fetch_all(&mut *transaction)
        .await?;
        let mut appended = Vec::with_capacity(rows.len());
        for (id, subject, payload) in rows {
            // In the order they were staged; stop at the first failure.
            self.append(Staged {
                id,
                subject,
                payload,
            })
            .await?;
            appended.push(id);
        }
        sqlx::query("DELETE FROM log_outbox WHERE id = ANY($1)")
            .bind(&appended)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(appended.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] LogError),
}
