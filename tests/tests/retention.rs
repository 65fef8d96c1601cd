//! Retention: what is older than `HERALD_RETENTION_DAYS` leaves the read models — finished
//! events with their payloads and deliveries, dead letters — while an event still being
//! delivered stays whatever its age, and nothing younger is touched.

use herald::config::StackConfig;
use herald_projector::maintenance::Maintenance;
use herald_tests::{start_with, Api};

#[tokio::test]
async fn old_finished_events_go_and_unfinished_or_recent_ones_stay() -> anyhow::Result<()> {
    let api = Api::with(start_with(|_| {})?);
    let pool = api.postgres().await?;
    let tenant = uuid::Uuid::now_v7();
    let endpoint = uuid::Uuid::now_v7();
    // All in one transaction: the projector's own housekeeping runs once when it starts and
    // must not find an event without its delivery.
    let mut transaction = pool.begin().await?;
    let mut ids = Vec::new();
    for (age_days, status, delivery_status) in [
        (40, "delivered", "succeeded"),
        (40, "failed", "dead_lettered"),
        (40, "delivering", "retrying"),
        (3, "delivered", "succeeded"),
    ] {
        let event_id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO events (event_id, tenant_id, event_type, payload, trace_id, accepted_at, \
               status, log_sequence) \
             VALUES ($1, $2, 't', '{}', '', now() - make_interval(days => $3), $4, 1)",
        )
        .bind(event_id)
        .bind(tenant)
        .bind(age_days)
        .bind(status)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO deliveries (event_id, endpoint_id, tenant_id, status, attempt_count, \
               updated_at) VALUES ($1, $2, $3, $4, 1, now())",
        )
        .bind(event_id)
        .bind(endpoint)
        .bind(tenant)
        .bind(delivery_status)
        .execute(&mut *transaction)
        .await?;
        ids.push(event_id);
    }
    sqlx::query(
        "INSERT INTO projector_dead_letters (projector, stream_sequence, subject, error, message, \
           recorded_at) VALUES ('p', 1, 's', 'e', '\\x00', now() - interval '40 days'), \
                               ('p', 2, 's', 'e', '\\x00', now())",
    )
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;

    let stack = StackConfig {
        clickhouse_url: api.herald.clickhouse_url.clone(),
        ..StackConfig::default()
    };
    Maintenance {
        pool: pool.clone(),
        clickhouse: herald::stack::clickhouse_client(&stack)
            .with_database(&api.herald.clickhouse_database),
        retention_days: 30,
        idempotency_retention_hours: 48,
    }
    .run_once()
    .await?;

    let events: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT event_id FROM events WHERE tenant_id = $1 ORDER BY event_id")
            .bind(tenant)
            .fetch_all(&pool)
            .await?;
    let deliveries: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT event_id FROM deliveries WHERE tenant_id = $1 ORDER BY event_id")
            .bind(tenant)
            .fetch_all(&pool)
            .await?;
    let kept = vec![(ids[2],), (ids[3],)];
    assert_eq!(events, kept, "old finished events deleted, the others kept");
    assert_eq!(deliveries, kept, "deliveries go with their events");
    let dead_letters: Vec<(i64,)> =
        sqlx::query_as("SELECT stream_sequence FROM projector_dead_letters WHERE projector = 'p'")
            .fetch_all(&pool)
            .await?;
    assert_eq!(dead_letters, vec![(2,)]);
    Ok(())
}
