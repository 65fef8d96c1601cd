//! Brings every store's schema up to date: Postgres (sqlx migrations), ClickHouse (ordered
//! SQL files in `migrations/clickhouse`, recorded in `schema_migrations`) and the JetStream
//! streams. Idempotent; run by `herald migrate` and at the start of every service.
//!
//! ClickHouse has no transactions or locks: a process holds a Postgres advisory lock (named
//! after the ClickHouse database) while it migrates ClickHouse, so that processes starting
//! together apply each migration once, one after the other. A migration is recorded after its
//! last statement: one stopped part-way runs again whole, so its statements are written to
//! give the same result when run twice (`IF NOT EXISTS`, and 0003 empties its rollups before
//! it backfills them).

use crate::config::StackConfig;
use crate::stack::{clickhouse_client, Stack};

/// ClickHouse migrations in order. `{database}` is replaced by the configured database.
const CLICKHOUSE_MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "attempts",
        include_str!("../../migrations/clickhouse/0001_attempts.sql"),
    ),
    (
        2,
        "response_body_hash",
        include_str!("../../migrations/clickhouse/0002_response_body_hash.sql"),
    ),
    (
        3,
        "sli_rollups",
        include_str!("../../migrations/clickhouse/0003_sli_rollups.sql"),
    ),
    (
        4,
        "sli_views",
        include_str!("../../migrations/clickhouse/0004_sli_views.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("Postgres migration failed: {0}")]
    Postgres(#[from] sqlx::migrate::MigrateError),
    #[error("ClickHouse migration {version} failed: {source}")]
    ClickHouse {
        version: u32,
        source: clickhouse::error::Error,
    },
    #[error("cannot prepare ClickHouse: {0}")]
    ClickHouseSetup(#[from] clickhouse::error::Error),
    #[error("cannot take the Postgres lock that serialises ClickHouse migrations: {0}")]
    ClickHouseLock(sqlx::Error),
    #[error(transparent)]
    Log(#[from] herald_log::LogError),
}

pub async fn migrate(config: &StackConfig, stack: &Stack) -> Result<(), MigrateError> {
    sqlx::migrate!("../migrations/postgres")
        .run(&stack.pool)
        .await?;
    migrate_clickhouse_alone(config, stack).await?;
    let log_max_age = std::time::Duration::from_secs(u64::from(config.log_max_age_days) * 86_400);
    herald_log::ensure_streams(
        &stack.jetstream,
        &stack.namespace,
        config.log_replicas,
        log_max_age,
    )
    .await?;
    Ok(())
}

/// Migrates ClickHouse holding a session-level advisory lock on one Postgres connection; the
/// lock goes with the connection if the process dies.
async fn migrate_clickhouse_alone(config: &StackConfig, stack: &Stack) -> Result<(), MigrateError> {
    let lock_name = format!(
        "herald clickhouse migrations {}",
        config.clickhouse_database
    );
    let mut connection = stack
        .pool
        .acquire()
        .await
        .map_err(MigrateError::ClickHouseLock)?;
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(&lock_name)
        .execute(&mut *connection)
        .await
        .map_err(MigrateError::ClickHouseLock)?;
    let migrated = migrate_clickhouse(config, &config.clickhouse_database).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&lock_name)
        .execute(&mut *connection)
        .await;
    if unlocked.is_err() {
        // Closing the connection releases the lock.
        drop(connection.detach());
    }
    migrated
}

/// Creates database `database` if need be and applies the ClickHouse migrations it lacks.
/// Also makes the copy a ClickHouse rebuild is built in, so that its tables and views are
/// the live ones'.
pub async fn migrate_clickhouse(config: &StackConfig, database: &str) -> Result<(), MigrateError> {
    let server = clickhouse_client(config);
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await?;
    server
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {database}.schema_migrations \
             (version UInt32, name String, applied_at DateTime) ENGINE = TinyLog"
        ))
        .execute()
        .await?;
    let applied: Vec<u32> = server
        .query(&format!("SELECT version FROM {database}.schema_migrations"))
        .fetch_all()
        .await?;
    for &(version, name, sql) in CLICKHOUSE_MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let sql = sql.replace("{database}", database);
        for statement in statements(&sql) {
            server
                .query(statement)
                .execute()
                .await
                .map_err(|source| MigrateError::ClickHouse { version, source })?;
        }
        server
            .query(&format!(
                "INSERT INTO {database}.schema_migrations (version, name, applied_at) VALUES (?, ?, now())"
            ))
            .bind(version)
            .bind(name)
            .execute()
            .await?;
        tracing::info!(version, name, "ClickHouse migration applied");
    }
    Ok(())
}

/// Splits a file into statements at semicolons that end a line; comment-only parts are dropped.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n").map(str::trim).filter(|statement| {
        statement
            .lines()
            .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ending_semicolons() {
        let sql =
            "-- comment\nCREATE TABLE a (x String);\n\nCREATE TABLE b (y String);\n-- trailing\n";
        let parts: Vec<&str> = statements(sql).collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with("CREATE TABLE b"));
    }
}
