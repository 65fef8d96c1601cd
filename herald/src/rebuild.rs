//! `herald rebuild --target postgres|clickhouse [--from <time|sequence>]`: rebuilds a read
//! model from the log while live traffic goes on, then switches over (see
//! `herald_projector::rebuild` and `herald_projector::clickhouse_rebuild`). Progress is a bar
//! on a terminal and a line every few seconds otherwise.

use crate::config::StackConfig;
use crate::migrate::{migrate_clickhouse, MigrateError};
use crate::stack::{clickhouse_client, Stack};
use chrono::{DateTime, Utc};
use herald_projector::clickhouse_hold::WriteHold;
use herald_projector::clickhouse_rebuild::{ClickHouseRebuild, RebuiltClickHouse};
use herald_projector::rebuild::{PostgresRebuild, Progress, Rebuilt, StartAt};
use herald_projector::ProjectorError;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("`--from {0}` is neither a log sequence number nor an RFC 3339 time")]
pub struct InvalidStart(String);

/// What `--from` accepts: a log sequence number or an RFC 3339 time; nothing is the beginning.
pub fn parse_start(text: Option<&str>) -> Result<StartAt, InvalidStart> {
    let Some(text) = text else {
        return Ok(StartAt::Beginning);
    };
    if let Ok(sequence) = text.parse::<u64>() {
        return Ok(StartAt::Sequence(sequence));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| StartAt::Time(at.with_timezone(&Utc)))
        .map_err(|_| InvalidStart(text.to_owned()))
}

pub async fn rebuild_postgres(stack: &Stack, start_at: StartAt) -> Result<Rebuilt, ProjectorError> {
    let log_stream = open_log(stack).await?;
    let mut display = ProgressDisplay::new("postgres");
    let rebuilt = PostgresRebuild {
        log_stream,
        pool: stack.pool.clone(),
        checkpoint: stack.namespace.postgres_checkpoint(),
    }
    .run(start_at, |progress| display.show(progress))
    .await;
    display.finish();
    rebuilt
}

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseRebuildError {
    #[error("cannot make the copy database {database}: {source}")]
    Copy {
        database: String,
        #[source]
        source: MigrateError,
    },
    #[error(transparent)]
    Rebuild(#[from] ProjectorError),
}

/// Builds the copy in database `<live>_rebuild`, made by the live database's migrations, and
/// drops it afterwards whatever happened.
pub async fn rebuild_clickhouse(
    config: &StackConfig,
    stack: &Stack,
    start_at: StartAt,
) -> Result<RebuiltClickHouse, ClickHouseRebuildError> {
    let live_database = config.clickhouse_database.clone();
    let copy_database = format!("{live_database}_rebuild");
    let server = clickhouse_client(config);
    let drop_copy = format!("DROP DATABASE IF EXISTS {copy_database}");
    server
        .query(&drop_copy)
        .execute()
        .await
        .map_err(ProjectorError::from)?;
    migrate_clickhouse(config, &copy_database)
        .await
        .map_err(|source| ClickHouseRebuildError::Copy {
            database: copy_database.clone(),
            source,
        })?;
    let log_stream = open_log(stack).await?;
    let mut display = ProgressDisplay::new("clickhouse");
    let rebuilt = ClickHouseRebuild {
        log_stream,
        attempts_filter: stack.namespace.attempts_filter(),
        live: stack.clickhouse.clone(),
        live_database: live_database.clone(),
        copy: server.clone().with_database(&copy_database),
        copy_database: copy_database.clone(),
        hold: WriteHold::for_database(stack.pool.clone(), &live_database),
    }
    .run(start_at, |progress| display.show(progress))
    .await;
    display.finish();
    if let Err(error) = server.query(&drop_copy).execute().await {
        tracing::warn!(%error, "the rebuild's copy was not dropped; drop database {copy_database}");
    }
    Ok(rebuilt?)
}

async fn open_log(stack: &Stack) -> Result<async_nats::jetstream::stream::Stream, ProjectorError> {
    stack
        .jetstream
        .get_stream(stack.namespace.log_stream())
        .await
        .map_err(|error| ProjectorError::Log {
            context: "cannot open the log stream",
            source: Box::new(error),
        })
}

struct ProgressDisplay {
    target: &'static str,
    terminal: bool,
    last_shown: Option<Instant>,
}

impl ProgressDisplay {
    fn new(target: &'static str) -> Self {
        Self {
            target,
            terminal: std::io::stderr().is_terminal(),
            last_shown: None,
        }
    }

    fn show(&mut self, progress: Progress) {
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last_shown.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_shown = Some(Instant::now());
        let share = progress.applied_through as f64 / progress.target.max(1) as f64;
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            let filled = (share.clamp(0.0, 1.0) * 30.0) as usize;
            write!(
                stderr,
                "\rrebuilding {} [{:<30}] {:>3.0}%  through sequence {} of {}",
                self.target,
                "#".repeat(filled),
                share * 100.0,
                progress.applied_through,
                progress.target
            )
        } else {
            writeln!(
                stderr,
                "rebuilding {}: through sequence {} of {} ({:.0}%)",
                self.target,
                progress.applied_through,
                progress.target,
                share * 100.0
            )
        };
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.terminal && self.last_shown.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_a_sequence_a_time_or_the_beginning() {
        assert_eq!(parse_start(None).ok(), Some(StartAt::Beginning));
        assert_eq!(parse_start(Some("42")).ok(), Some(StartAt::Sequence(42)));
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .map(|at| at.with_timezone(&Utc))
            .ok();
        assert_eq!(
            parse_start(Some("2026-11-26T10:00:00Z")).ok(),
            at.map(StartAt::Time)
        );
        assert!(parse_start(Some("yesterday")).is_err());
    }
}
