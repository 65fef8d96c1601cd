//! Brings every store's schema up to date: Postgres (sqlx migrations), ClickHouse (ordered
//! SQL files in `migrations/clickhouse`, recorded in `schema_migrations`) and the JetStream
//! streams. Idempotent; run by `herald migrate` and at the start of every service.

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
    #[error(transparent)]
    Log(#[from] herald_log::LogError),
}

pub async fn migrate(config: &StackConfig, stack: &Stack) -> Result<(), MigrateError> {
    sqlx::migrate!("../migrations/postgres")
        .run(&stack.pool)
        .await?;
    migrate_clickhouse(config).await?;
    herald_log::ensure_streams(&stack.jetstream, &stack.namespace, config.log_replicas).await?;
    Ok(())
}

async fn migrate_clickhouse(config: &StackConfig) -> Result<(), MigrateError> {
    let database = &config.clickhouse_database;
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
