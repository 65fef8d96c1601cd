//! Applies the log to Postgres: events, deliveries and attempts, with exactly-once effect.
//!
//! Each batch is one transaction that also moves this projector's checkpoint (the last stream
//! sequence applied). The log is read in order from the checkpoint on, without
//! acknowledgements, and messages at or below the checkpoint are skipped: a crash anywhere
//! neither loses nor repeats an effect. The checkpoint row is locked for the transaction, so
//! even two instances running at once apply each message exactly once.

use crate::batch::{next_batch, read_from, sequence, Pulled};
use crate::endpoint_health::{self, HealthChanges};
use crate::error::ProjectorError;
use crate::lag::AppliedPosition;
use crate::postgres_rows::{
    words, AttemptRows, Deferrals, DeliveryUpdates, EventRows, NewDeliveryRows,
};
use crate::reader_watch::ReaderWatch;
use crate::replays_projection::{self, ReplayChanges};
use crate::status_sql::{event_status_case, in_list};
use async_nats::jetstream::{self, Message};
use herald_schemas::{DeliveryStatus, EventStatus, LogMessage};
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::LazyLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `name` is the checkpoint key (`Namespace::postgres_checkpoint`): one per log stream, so
/// installations (namespaces) sharing a database keep separate positions. `applied` is told
/// each checkpoint committed (for the lag gauges); `reader` asks for a new log reader when
/// the current one is stuck.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    pool: PgPool,
    name: String,
    log_stream: jetstream::stream::Stream,
    max_batch: usize,
    window: Duration,
    applied: AppliedPosition,
    reader: ReaderWatch,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    while !shutdown.is_cancelled() {
        let checkpoint = match read_checkpoint(&pool, &name).await {
            Ok(checkpoint) => checkpoint,
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "cannot read the projector checkpoint; retrying");
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        // A log that cannot answer for now (a leader election) is waited for; a log that
        // ends before the checkpoint stops the projector.
        match crate::batch::ensure_not_ahead(&log_stream, checkpoint, &name).await {
            Ok(()) => {}
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "cannot check the log against the checkpoint; retrying");
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => return Err(error),
        }
        let mut messages = match read_from(&log_stream, String::new(), checkpoint + 1).await {
            Ok(messages) => messages,
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, "cannot read the log; retrying");
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let mut applied_through = checkpoint;
        applied.set(applied_through);
        'reading: loop {
            let batch = match next_batch(
                &mut messages,
                max_batch,
                crate::batch::MAX_BATCH_BYTES,
                window,
                &shutdown,
                &reader,
            )
            .await
            {
                Pulled::Batch(batch) => batch,
                Pulled::Interrupted => break,
                Pulled::Shutdown => return Ok(()),
            };
            let mut delay = Duration::from_millis(100);
            loop {
                match apply(&pool, &name, &batch, applied_through).await {
                    Ok(through) => {
                        applied_through = through;
                        applied.set(applied_through);
                        break;
                    }
                    Err(error @ ProjectorError::CheckpointWentBack { .. }) => {
                        tracing::warn!(%error);
                        break 'reading;
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, messages = batch.len(), "batch not applied; retrying");
                    }
                    Err(error) => return Err(error),
                }
                pause(&shutdown, delay).await;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(projector = name))]
async fn read_checkpoint(pool: &PgPool, name: &str) -> Result<u64, ProjectorError> {
    let checkpoint: Option<i64> = sqlx::query_scalar(
        "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(checkpoint.unwrap_or(0).max(0) as u64)
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Applies one batch in one transaction; `applied_through` is the checkpoint this projector
/// last committed. Returns the new checkpoint. Fails with
/// [`ProjectorError::CheckpointWentBack`] or a database error.
#[tracing::instrument(
    skip_all,
    fields(
        projector = name,
        messages = batch.len(),
        first_sequence = batch.first().map_or(0, sequence),
        last_sequence = batch.last().map_or(0, sequence),
    )
)]
pub async fn apply(
    pool: &PgPool,
    name: &str,
    batch: &[Message],
    applied_through: u64,
) -> Result<u64, ProjectorError> {
    let mut transaction = pool.begin().await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "INSERT INTO projector_checkpoints (projector, stream_sequence, updated_at) VALUES ($1, 0, now()) \
         ON CONFLICT (projector) DO UPDATE SET projector = EXCLUDED.projector RETURNING stream_sequence",
    )
    .bind(name)
    .fetch_one(&mut *transaction)
    .await?;
    if (checkpoint as u64) < applied_through {
        return Err(ProjectorError::CheckpointWentBack {
            believed: applied_through,
            stored: checkpoint as u64,
        });
    }

    let mut events = EventRows::default();
    let mut new_deliveries = NewDeliveryRows::default();
    let mut attempts = AttemptRows::default();
    let mut delivery_updates = DeliveryUpdates::default();
    let mut deferrals = Deferrals::default();
    let mut health = HealthChanges::default();
    let mut replays = ReplayChanges::default();
    let mut last_sequence = checkpoint as u64;
    for message in batch {
        let sequence = sequence(message);
        if sequence <= checkpoint as u64 {
            continue;
        }
        last_sequence = last_sequence.max(sequence);
        match LogMessage::decode(&message.payload) {
            Ok(LogMessage::EventAccepted(event)) => {
                events.push(&event, sequence, &mut new_deliveries)
            }
            Ok(LogMessage::AttemptRecorded(attempt)) => {
                attempts.push(&attempt, sequence);
                delivery_updates.record(&attempt);
                health.attempt(&attempt, sequence);
            }
            Ok(LogMessage::EndpointCircuitOpened(opened)) => {
                health.breaker_opened(&opened, sequence)
            }
            Ok(LogMessage::EndpointCircuitClosed(closed)) => {
                health.breaker_closed(&closed, sequence)
            }
            Ok(LogMessage::DeliveryDeferred(deferred)) => deferrals.record(&deferred),
            Ok(
                message @ (LogMessage::ReplayStarted(_)
                | LogMessage::ReplayProgressed(_)
                | LogMessage::ReplayFinished(_)),
            ) => replays.record(message),
            Ok(_) => {}
            Err(error) => {
                record_poison(
                    &mut transaction,
                    name,
                    message,
                    sequence,
                    &error.to_string(),
                )
                .await?
            }
        }
    }
    if last_sequence == checkpoint as u64 {
        return Ok(last_sequence);
    }
    // Every statement below finds rows by the keys of this batch. Offered a few thousand
    // keys, the planner's default costs (random_page_cost 4) prefer reading all of `events`
    // and `deliveries` once to a few thousand index lookups, with statistics or without,
    // until the tables hold millions of rows: a full scan per batch, growing with every
    // event (docs/PERFORMANCE.md, third round).
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *transaction)
        .await?;
    delivery_updates.fold_into_new(&mut new_deliveries, &mut events);
    insert_events(&mut transaction, &events).await?;
    insert_deliveries(&mut transaction, &new_deliveries).await?;
    insert_attempts(&mut transaction, &attempts).await?;
    let touched_events = delivery_updates.event_ids();
    update_deliveries(&mut transaction, delivery_updates).await?;
    defer_deliveries(&mut transaction, deferrals).await?;
    update_event_status(&mut transaction, &touched_events).await?;
    endpoint_health::apply(&mut transaction, health).await?;
    replays_projection::apply(&mut transaction, replays).await?;
    sqlx::query("UPDATE projector_checkpoints SET stream_sequence = $2, updated_at = now() WHERE projector = $1")
        .bind(name)
        .bind(last_sequence as i64)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(last_sequence)
}

async fn record_poison(
    transaction: &mut Transaction<'_, Postgres>,
    name: &str,
    message: &Message,
    sequence: u64,
    error: &str,
) -> Result<(), sqlx::Error> {
    tracing::error!(sequence, %error, "log message cannot be applied; kept in projector_dead_letters");
    sqlx::query(
        "INSERT INTO projector_dead_letters (projector, stream_sequence, subject, error, message, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(sequence as i64)
    .bind(message.subject.as_str())
    .bind(error)
    .bind(message.payload.as_ref())
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}

#[tracing::instrument(level = "debug", skip_all, fields(rows = rows.event_id.len()))]
async fn insert_events(
    transaction: &mut Transaction<'_, Postgres>,
    rows: &EventRows,
) -> Result<(), sqlx::Error> {
    if rows.event_id.is_empty() {
        return Ok(());
    }
    // Usage counts the events this statement really added (ADR 0021).
    sqlx::query(
        "WITH inserted AS ( \
         INSERT INTO events (event_id, tenant_id, event_type, payload, idempotency_key, trace_id, accepted_at, status, log_sequence, \
           target_endpoints, deliver_after, expires_at) \
         SELECT event_id, tenant_id, event_type, payload::json, idempotency_key, trace_id, accepted_at, status, log_sequence, \
           string_to_array(target_endpoints, ',')::uuid[], deliver_after, expires_at \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::int8[], \
           $10::text[], $11::timestamptz[], $12::timestamptz[]) \
           AS t(event_id, tenant_id, event_type, payload, idempotency_key, trace_id, accepted_at, status, log_sequence, \
             target_endpoints, deliver_after, expires_at) \
         ON CONFLICT (event_id) DO NOTHING \
         RETURNING tenant_id, accepted_at) \
         INSERT INTO tenant_usage_hourly (tenant_id, hour, events_accepted) \
         SELECT tenant_id, date_trunc('hour', accepted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*) \
         FROM inserted GROUP BY 1, 2 \
         ON CONFLICT (tenant_id, hour) DO UPDATE \
           SET events_accepted = tenant_usage_hourly.events_accepted + EXCLUDED.events_accepted",
    )
    .bind(&rows.event_id)
    .bind(&rows.tenant_id)
    .bind(&rows.event_type)
    .bind(&rows.payload)
    .bind(&rows.idempotency_key)
    .bind(&rows.trace_id)
    .bind(&rows.accepted_at)
    .bind(words(&rows.status, EventStatus::as_str))
    .bind(&rows.log_sequence)
    .bind(&rows.target_endpoints)
    .bind(&rows.deliver_after)
    .bind(&rows.expires_at)
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}

#[tracing::instrument(level = "debug", skip_all, fields(rows = rows.event_id.len()))]
async fn insert_deliveries(
    transaction: &mut Transaction<'_, Postgres>,
    rows: &NewDeliveryRows,
) -> Result<(), sqlx::Error> {
    if rows.event_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO deliveries (event_id, endpoint_id, tenant_id, status, attempt_count, \
           last_attempt_at, next_attempt_at, last_http_status, last_error_code, updated_at) \
         SELECT event_id, endpoint_id, tenant_id, status, attempt_count, last_attempt_at, \
           next_attempt_at, last_http_status, last_error_code, now() \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int4[], $6::timestamptz[], \
           $7::timestamptz[], $8::int4[], $9::text[]) \
           AS t(event_id, endpoint_id, tenant_id, status, attempt_count, last_attempt_at, \
             next_attempt_at, last_http_status, last_error_code) \
         ON CONFLICT (event_id, endpoint_id) DO NOTHING",
    )
    .bind(&rows.event_id)
    .bind(&rows.endpoint_id)
    .bind(&rows.tenant_id)
    .bind(words(&rows.status, DeliveryStatus::as_str))
    .bind(&rows.attempt_count)
    .bind(&rows.last_attempt_at)
    .bind(&rows.next_attempt_at)
    .bind(&rows.last_http_status)
    .bind(&rows.last_error_code)
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}

#[tracing::instrument(level = "debug", skip_all, fields(rows = rows.attempt_id.len()))]
async fn insert_attempts(
    transaction: &mut Transaction<'_, Postgres>,
    rows: &AttemptRows,
) -> Result<(), sqlx::Error> {
    if rows.attempt_id.is_empty() {
        return Ok(());
    }
    // Usage counts the attempts this statement really added (ADR 0021).
    sqlx::query(
        "WITH inserted AS ( \
         INSERT INTO attempts (attempt_id, tenant_id, event_id, endpoint_id, attempt_number, scheduled_at, started_at, \
           finished_at, http_status, error_code, error_message, latency_ms, outcome, next_attempt_at, trace_id, log_sequence, \
           response_body_hash, request_bytes, response_bytes) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int4[], $6::timestamptz[], \
           $7::timestamptz[], $8::timestamptz[], $9::int4[], $10::text[], $11::text[], $12::int4[], $13::text[], \
           $14::timestamptz[], $15::text[], $16::int8[], $17::text[], $18::int4[], $19::int4[]) \
         ON CONFLICT DO NOTHING \
         RETURNING tenant_id, endpoint_id, started_at, attempt_number, outcome, request_bytes, response_bytes) \
         INSERT INTO endpoint_usage_hourly \
           (tenant_id, endpoint_id, hour, attempts, retries, successes, request_bytes, response_bytes) \
         SELECT tenant_id, endpoint_id, date_trunc('hour', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', \
           count(*), count(*) FILTER (WHERE attempt_number > 1), count(*) FILTER (WHERE outcome = 'succeeded'), \
           sum(request_bytes), sum(response_bytes) \
         FROM inserted GROUP BY 1, 2, 3 \
         ON CONFLICT (tenant_id, hour, endpoint_id) DO UPDATE SET \
           attempts = endpoint_usage_hourly.attempts + EXCLUDED.attempts, \
           retries = endpoint_usage_hourly.retries + EXCLUDED.retries, \
           successes = endpoint_usage_hourly.successes + EXCLUDED.successes, \
           request_bytes = endpoint_usage_hourly.request_bytes + EXCLUDED.request_bytes, \
           response_bytes = endpoint_usage_hourly.response_bytes + EXCLUDED.response_bytes",
    )
    .bind(&rows.attempt_id)
    .bind(&rows.tenant_id)
    .bind(&rows.event_id)
    .bind(&rows.endpoint_id)
    .bind(&rows.attempt_number)
    .bind(&rows.scheduled_at)
    .bind(&rows.started_at)
    .bind(&rows.finished_at)
    .bind(&rows.http_status)
    .bind(&rows.error_code)
    .bind(&rows.error_message)
    .bind(&rows.latency_ms)
    .bind(&rows.outcome)
    .bind(&rows.next_attempt_at)
    .bind(&rows.trace_id)
    .bind(&rows.log_sequence)
    .bind(&rows.response_body_hash)
    .bind(&rows.request_bytes)
    .bind(&rows.response_bytes)
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}

#[tracing::instrument(level = "debug", skip_all, fields(rows = updates.len()))]
async fn update_deliveries(
    transaction: &mut Transaction<'_, Postgres>,
    updates: DeliveryUpdates,
) -> Result<(), sqlx::Error> {
    let rows = updates.into_rows();
    if rows.event_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE deliveries AS d SET status = u.status, attempt_count = d.attempt_count + u.attempts, \
           last_attempt_at = u.finished_at, next_attempt_at = u.next_attempt_at, \
           last_http_status = u.http_status, last_error_code = u.error_code, deferral_reason = NULL, \
           updated_at = now() \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::int4[], $8::text[]) \
           AS u(event_id, endpoint_id, attempts, status, finished_at, next_attempt_at, http_status, error_code) \
         WHERE d.event_id = u.event_id AND d.endpoint_id = u.endpoint_id",
    )
    .bind(&rows.event_id)
    .bind(&rows.endpoint_id)
    .bind(&rows.attempts)
    .bind(words(&rows.status, DeliveryStatus::as_str))
    .bind(&rows.finished_at)
    .bind(&rows.next_attempt_at)
    .bind(&rows.http_status)
    .bind(&rows.error_code)
    .execute(&mut **transaction)
    .await
    .map(|_| ())
}

/// Moves a deferred delivery's next attempt; only unfinished deliveries wait for one.
static DEFER_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS d SET next_attempt_at = u.until, deferral_reason = u.reason, \
           updated_at = now() \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::timestamptz[], $5::text[]) \
           AS u(event_id, endpoint_id, attempt_number, until, reason) \
         WHERE d.event_id = u.event_id AND d.endpoint_id = u.endpoint_id \
           AND d.attempt_count < u.attempt_number AND d.status IN ({})",
        in_list(&DeliveryStatus::UNFINISHED)
    )
});

/// Moves the next attempt of deferred deliveries to when it is really due. A deferral of an
/// attempt that has since been made (recorded earlier in this batch or before) is stale.
#[tracing::instrument(level = "debug", skip_all, fields(rows = deferrals.len()))]
async fn defer_deliveries(
    transaction: &mut Transaction<'_, Postgres>,
    deferrals: Deferrals,
) -> Result<(), sqlx::Error> {
    let rows = deferrals.into_rows();
    if rows.event_id.is_empty() {
        return Ok(());
    }
    sqlx::query(&DEFER_DELIVERIES)
        .bind(&rows.event_id)
        .bind(&rows.endpoint_id)
        .bind(&rows.attempt_number)
        .bind(&rows.until)
        .bind(&rows.reason)
        .execute(&mut **transaction)
        .await
        .map(|_| ())
}

/// Sets the status of the events `$1` from all their deliveries, by `EventStatus::RULE`.
static UPDATE_EVENT_STATUS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE events AS e SET status = s.status FROM ( \
           SELECT event_id, {} AS status \
           FROM deliveries WHERE event_id = ANY($1) GROUP BY event_id) AS s \
         WHERE e.event_id = s.event_id AND e.status <> s.status",
        event_status_case()
    )
});

/// Recomputes the status of events whose existing deliveries changed (by
/// `EventStatus::RULE`, as for the batch's new events).
#[tracing::instrument(level = "debug", skip_all, fields(events = event_ids.len()))]
async fn update_event_status(
    transaction: &mut Transaction<'_, Postgres>,
    event_ids: &[uuid::Uuid],
) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&UPDATE_EVENT_STATUS)
        .bind(event_ids)
        .execute(&mut **transaction)
        .await
        .map(|_| ())
}
