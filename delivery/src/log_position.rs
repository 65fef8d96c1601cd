//! Where a consumer of the log stream starts when it has to be created — on a new installation,
//! or because the server lost it: right after what the Postgres read model has applied. Events
//! up to there are in the read model, where the look for overdue deliveries finds those still
//! unfinished (`overdue`); events after it are handed out again. Starting from the beginning
//! instead would deliver the whole history again; starting from the end would lose what came
//! after the read model's position until the overdue look caught up with it.

use async_nats::jetstream::consumer::DeliverPolicy;
use sqlx::PgPool;

/// How far into the log stream the Postgres read model is (`None`: nothing projected yet).
/// `checkpoint` is the projector's checkpoint name (`Namespace::postgres_checkpoint`).
pub async fn read_model_position(
    pool: &PgPool,
    checkpoint: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let applied: Option<i64> = sqlx::query_scalar(
        "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
    )
    .bind(checkpoint)
    .fetch_optional(pool)
    .await?;
    Ok(applied
        .filter(|sequence| *sequence > 0)
        .map(|sequence| sequence as u64))
}

pub async fn after_read_model(pool: &PgPool, checkpoint: &str) -> DeliverPolicy {
    match read_model_position(pool, checkpoint).await {
        Ok(Some(sequence)) => DeliverPolicy::ByStartSequence {
            start_sequence: sequence + 1,
        },
        // Nothing projected yet: a new installation, whose log is all new.
        Ok(_) => DeliverPolicy::All,
        Err(error) => {
            tracing::warn!(%error, "read model unavailable; the new consumer reads only new messages (the overdue look recovers the rest)");
            DeliverPolicy::New
        }
    }
}
