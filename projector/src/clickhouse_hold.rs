//! Who may write ClickHouse's read model right now. The live projector writes holding this
//! shared; a rebuild's switch-over and `herald reconcile`'s counting hold it exclusively, so
//! that while they look the projector writes nothing (it waits at its next insert, holding
//! nothing else).
//!
//! It is a Postgres advisory lock taken in a transaction: it goes with the connection if a
//! process dies, and ClickHouse has no lock of its own. A holder that dies may leave an
//! insert running on the ClickHouse server; whoever takes the hold exclusively waits for it
//! too (`clickhouse_projection::wait_for_running_inserts`).

use crate::error::ProjectorError;
use sqlx::{PgPool, Postgres, Transaction};

pub struct WriteHold {
    pool: PgPool,
    name: String,
}

/// Held until [`Held::release`] (or, if dropped, until the connection's next use rolls the
/// transaction back: always release).
pub struct Held(Transaction<'static, Postgres>);

impl Held {
    pub async fn release(self) {
        if let Err(error) = self.0.commit().await {
            // The lock went with the transaction anyway when the connection broke.
            tracing::warn!(%error, "releasing the ClickHouse write hold failed");
        }
    }
}

impl WriteHold {
    /// The hold over the read model in ClickHouse database `database`.
    pub fn for_database(pool: PgPool, database: &str) -> Self {
        Self {
            pool,
            name: format!("herald clickhouse writes {database}"),
        }
    }

    /// Taken by the projector around each write.
    pub async fn shared(&self) -> Result<Held, ProjectorError> {
        self.take("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
            .await
    }

    /// Taken by whoever must see the read model still: waits for the write holding it.
    pub async fn exclusive(&self) -> Result<Held, ProjectorError> {
        self.take("SELECT pg_advisory_xact_lock(hashtext($1))")
            .await
    }

    async fn take(&self, statement: &'static str) -> Result<Held, ProjectorError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(statement)
            .bind(&self.name)
            .execute(&mut *transaction)
            .await?;
        Ok(Held(transaction))
    }
}
