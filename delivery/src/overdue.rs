//! Deliveries the log lost track of. A delivery's next attempt lives in the log (the event
//! on the first-attempt consumer, a `retry.due.v1` on a retry tier); if the broker loses or
//! forgets that message (a crash, a consumer recreated, a stream purged), nothing would ever
//! make the attempt. The Postgres read model knows when each unfinished delivery is due
//! (attempts and deferrals are projected into it), so a delivery still unfinished well past
//! that time is dispatched again as a retry due now.
//!
//! A dispatch carries a de-duplication id made of the delivery and the attempt number, so
//! several delivery processes looking at once append it once. If the lost message turns up
//! after all, the attempt may be made twice: receivers drop the duplicate by `webhook-id`.
//! Ordered endpoints are left out: their lanes keep their own position in Postgres and
//! re-read the log from it.

use crate::log_position::read_model_position;
use crate::retry_queue::RetryScheduler;
use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;
use herald_schemas::{DeliveryStatus, EndpointId, EventId, RetryDue, TenantId};
use sqlx::PgPool;
use std::sync::LazyLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// At most this many deliveries are dispatched again per look, this many appends at once.
const BATCH: i64 = 1_000;
const PIPELINED: usize = 256;

/// Unfinished deliveries due longer ago than `$1` milliseconds, oldest first. The statuses
/// are written into the text, not bound, so that the partial index
/// `deliveries_unfinished_by_due` (`WHERE status IN ('pending', 'retrying')`) applies.
static OVERDUE: LazyLock<String> = LazyLock::new(|| {
    let unfinished = DeliveryStatus::UNFINISHED
        .map(|status| format!("'{}'", status.as_str()))
        .join(", ");
    format!(
        "SELECT d.event_id, d.endpoint_id, d.tenant_id, d.attempt_count, e.log_sequence \
         FROM deliveries AS d \
         JOIN events AS e ON e.event_id = d.event_id \
         JOIN endpoints AS n ON n.endpoint_id = d.endpoint_id \
         WHERE d.status IN ({unfinished}) \
           AND d.next_attempt_at < now() - $1 * interval '1 millisecond' \
           AND NOT n.ordered \
         ORDER BY d.next_attempt_at LIMIT $2"
    )
});

pub struct OverdueDeliveries {
    pub pool: PgPool,
    pub retries: RetryScheduler,
    pub log_stream: jetstream::stream::Stream,
    /// The Postgres projector's checkpoint name.
    pub checkpoint: String,
    /// How far past due an unfinished delivery must be to count as lost. Longer than an
    /// attempt can take, so that one in flight is not taken for lost.
    pub overdue_after: Duration,
}

#[derive(Debug, thiserror::Error)]
enum LookError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("cannot read the log's state: {0}")]
    Log(String),
}

impl OverdueDeliveries {
    /// Looks every half `overdue_after` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = (self.overdue_after / 2).max(Duration::from_millis(500));
        // The log's end at the previous look: the read model is only trusted once it has
        // applied at least that much.
        let mut log_end_before: Option<u64> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            match self.look(&mut log_end_before).await {
                Ok(0) => {}
                Ok(dispatched) => {
                    tracing::warn!(
                        dispatched,
                        "overdue deliveries the log lost track of dispatched again"
                    )
                }
                Err(error) => tracing::warn!(%error, "cannot look for overdue deliveries"),
            }
        }
    }

    async fn look(&self, log_end_before: &mut Option<u64>) -> Result<usize, LookError> {
        let mut log_stream = self.log_stream.clone();
        let log_end = log_stream
            .info()
            .await
            .map_err(|error| LookError::Log(error.to_string()))?
            .state
            .last_sequence;
        let applied = read_model_position(&self.pool, &self.checkpoint).await?;
        let previous = log_end_before.replace(log_end);
        // A read model that lags (or a projector that is down) makes every delivery look
        // overdue; dispatch only on a model that has caught up with what the log held a look
        // ago.
        let current =
            matches!((previous, applied), (Some(before), Some(applied)) if applied >= before);
        if !current {
            return Ok(0);
        }
        let overdue: Vec<(uuid::Uuid, uuid::Uuid, uuid::Uuid, i32, i64)> = sqlx::query_as(&OVERDUE)
            .bind(self.overdue_after.as_millis() as f64)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
        let now = Utc::now();
        let retries = overdue.into_iter().map(
            |(event_id, endpoint_id, tenant_id, attempt_count, log_sequence)| RetryDue {
                event_id: EventId(event_id),
                endpoint_id: EndpointId(endpoint_id),
                tenant_id: TenantId(tenant_id),
                event_sequence: log_sequence as u64,
                attempt_number: attempt_count.max(0) as u32 + 1,
                due_at: now,
            },
        );
        // Appends are pipelined: their acknowledgements are awaited together.
        let dispatched = futures::stream::iter(retries)
            .map(|retry| async move {
                tracing::warn!(
                    event_id = %retry.event_id,
                    endpoint_id = %retry.endpoint_id,
                    tenant_id = %retry.tenant_id,
                    attempt_number = retry.attempt_number,
                    "delivery overdue in the read model and not in the log; dispatched again"
                );
                match self.retries.redispatch(&retry).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%error, "overdue delivery not dispatched; next look tries again");
                        false
                    }
                }
            })
            .buffer_unordered(PIPELINED)
            .filter(|dispatched| std::future::ready(*dispatched))
            .count()
            .await;
        Ok(dispatched)
    }
}
