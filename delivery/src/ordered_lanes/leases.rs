//! The lanes' state and leases in Postgres (`ordered_lanes`, `delivery_processes`): which
//! process runs which lane, and where each lane stands. Every write of a lane's position is
//! fenced by its lease.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// A lane as claimed from `ordered_lanes`.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct LaneState {
    pub endpoint_id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub endpoint_created_at: DateTime<Utc>,
    /// The last log sequence the lane finished.
    pub delivered_through: i64,
    /// The delivery in progress: its event's sequence, attempt number and due time.
    pub head_sequence: Option<i64>,
    pub head_attempt_number: Option<i32>,
    pub head_due_at: Option<DateTime<Utc>>,
}

/// This process's lanes after a renewal, and how many more than its share it holds.
pub(super) struct Claimed {
    pub lanes: Vec<LaneState>,
    pub over_share: usize,
}

/// Where a lane's head stands after an attempt.
pub(super) enum Head {
    /// The delivery at this sequence has its next attempt `attempt_number` due at `due_at`.
    Waiting {
        attempt_number: u32,
        due_at: DateTime<Utc>,
    },
    /// The delivery at this sequence is finished; the lane moves past it.
    Finished,
}

pub(super) struct LaneLeases {
    pool: PgPool,
    owner: String,
    lease: Duration,
}

impl LaneLeases {
    pub fn new(pool: PgPool, lease: Duration) -> Self {
        Self {
            pool,
            lease,
            owner: format!("delivery-{}", uuid::Uuid::now_v7()),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Announces this process, creates lanes for new ordered endpoints, renews this process's
    /// leases and takes lanes nobody holds, up to an even share among the live processes.
    #[tracing::instrument(level = "debug", skip_all, err, fields(owner = %self.owner))]
    pub async fn claim(&self) -> Result<Claimed, sqlx::Error> {
        let lease_ms = self.lease.as_millis() as f64;
        let (live, lanes): (i64, i64) = sqlx::query_as(
            "WITH beat AS ( \
               INSERT INTO delivery_processes (owner, seen_at) VALUES ($1, now()) \
               ON CONFLICT (owner) DO UPDATE SET seen_at = now()), \
             swept AS ( \
               DELETE FROM delivery_processes WHERE seen_at < now() - interval '1 day'), \
             ensured AS ( \
               INSERT INTO ordered_lanes (endpoint_id) \
               SELECT endpoint_id FROM endpoints WHERE ordered ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT (SELECT count(*) FROM delivery_processes \
                       WHERE owner <> $1 AND seen_at > now() - $2 * interval '1 millisecond') + 1, \
                    (SELECT count(*) FROM ordered_lanes) + (SELECT count(*) FROM ensured)",
        )
        .bind(&self.owner)
        .bind(lease_ms)
        .fetch_one(&self.pool)
        .await?;
        let share = (lanes + live - 1) / live.max(1);
        let held = sqlx::query(
            "UPDATE ordered_lanes SET leased_until = now() + $2 * interval '1 millisecond' \
             WHERE owner = $1",
        )
        .bind(&self.owner)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?
        .rows_affected() as i64;
        if held < share {
            sqlx::query(
                "UPDATE ordered_lanes SET owner = $1, leased_until = now() + $2 * interval '1 millisecond' \
                 WHERE endpoint_id IN ( \
                   SELECT endpoint_id FROM ordered_lanes \
                   WHERE owner IS NULL OR leased_until < now() \
                   ORDER BY endpoint_id LIMIT $3 FOR UPDATE SKIP LOCKED)",
            )
            .bind(&self.owner)
            .bind(lease_ms)
            .bind(share - held)
            .execute(&self.pool)
            .await?;
        }
        let lanes: Vec<LaneState> = sqlx::query_as(
            "SELECT l.endpoint_id, e.tenant_id, e.created_at AS endpoint_created_at, \
               l.delivered_through, l.head_sequence, l.head_attempt_number, l.head_due_at \
             FROM ordered_lanes l JOIN endpoints e ON e.endpoint_id = l.endpoint_id \
             WHERE l.owner = $1",
        )
        .bind(&self.owner)
        .fetch_all(&self.pool)
        .await?;
        let over_share = (lanes.len() as i64 - share).max(0) as usize;
        Ok(Claimed { lanes, over_share })
    }

    /// Gives back the leases of these lanes (stopped, handed over to another process).
    #[tracing::instrument(level = "debug", skip_all, err, fields(lanes = endpoint_ids.len()))]
    pub async fn give_back(&self, endpoint_ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ordered_lanes SET owner = NULL, leased_until = NULL \
             WHERE endpoint_id = ANY($1) AND owner = $2",
        )
        .bind(endpoint_ids)
        .bind(&self.owner)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Gives back every lease of this process and says it is gone (on shutdown).
    #[tracing::instrument(level = "debug", skip_all, err, fields(owner = %self.owner))]
    pub async fn give_back_all(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH gone AS (DELETE FROM delivery_processes WHERE owner = $1) \
             UPDATE ordered_lanes SET owner = NULL, leased_until = NULL WHERE owner = $1",
        )
        .bind(&self.owner)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Records where the lane stands after the delivery at `sequence`; `false` when this
    /// process no longer holds the lane's lease (nothing was written).
    #[tracing::instrument(level = "debug", skip_all, err, fields(endpoint_id = %endpoint_id, sequence))]
    pub async fn save(
        &self,
        endpoint_id: uuid::Uuid,
        sequence: i64,
        head: &Head,
    ) -> Result<bool, sqlx::Error> {
        let saved = match head {
            Head::Waiting {
                attempt_number,
                due_at,
            } => sqlx::query(
                "UPDATE ordered_lanes SET head_sequence = $3, head_attempt_number = $4, \
                   head_due_at = $5 WHERE endpoint_id = $1 AND owner = $2",
            )
            .bind(endpoint_id)
            .bind(&self.owner)
            .bind(sequence)
            .bind(*attempt_number as i32)
            .bind(*due_at),
            Head::Finished => sqlx::query(
                "UPDATE ordered_lanes SET delivered_through = $3, head_sequence = NULL, \
                   head_attempt_number = NULL, head_due_at = NULL \
                 WHERE endpoint_id = $1 AND owner = $2",
            )
            .bind(endpoint_id)
            .bind(&self.owner)
            .bind(sequence),
        }
        .execute(&self.pool)
        .await?;
        Ok(saved.rows_affected() == 1)
    }
}
