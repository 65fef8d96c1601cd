//! Deletes a namespace's log and retry streams (`bench/run.sh` runs it after each scenario,
//! with Herald stopped): streams left behind accumulate on the server, and the next
//! scenario should meet the server as fresh as its databases.
//!
//! With `--test-leftovers` it deletes instead everything that test runs and earlier bench
//! runs left behind: the streams of namespaces `t…`, `p…`, `s…` of eight hex digits and
//! `bench_…` (a day of them on a developer's server was 324 streams and 674 MB), and the
//! Postgres and ClickHouse databases `herald_t…`, `herald_p…`, `herald_s…` of the tests (222
//! of each after two days). `bench/run.sh` runs it before it starts, so `make test`, which
//! ends with the `quick` scenario, leaves none of its own behind. Not while tests run on the
//! same servers: their databases and streams would go.

use anyhow::{Context, Result};
use clap::Parser;
use futures::TryStreamExt;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "HERALD_NATS_URL")]
    nats_url: String,
    #[arg(
        long,
        env = "HERALD_NAMESPACE",
        required_unless_present = "test_leftovers"
    )]
    namespace: Option<String>,
    /// Delete the streams and databases of test and bench runs instead of one namespace's
    /// streams.
    #[arg(long)]
    test_leftovers: bool,
    /// The Postgres server whose test databases `--test-leftovers` drops.
    #[arg(long, env = "HERALD_DATABASE_URL")]
    database_url: Option<String>,
    /// The ClickHouse server whose test databases `--test-leftovers` drops.
    #[arg(long, env = "HERALD_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = async_nats::connect(&args.nats_url)
        .await
        .context("connect to NATS")?;
    let jetstream = async_nats::jetstream::new(nats);
    let streams = match (&args.namespace, args.test_leftovers) {
        (_, true) => {
            let names: Vec<String> = jetstream
                .stream_names()
                .try_collect()
                .await
                .context("list streams")?;
            names
                .into_iter()
                .filter(|name| left_by_a_run(name))
                .collect()
        }
        (Some(namespace), false) => {
            let namespace = herald_schemas::Namespace::new(namespace)?;
            vec![namespace.log_stream(), namespace.retry_stream()]
        }
        (None, false) => unreachable!("clap requires a namespace without --test-leftovers"),
    };
    let mut deleted = 0;
    for stream in streams {
        match jetstream.delete_stream(&stream).await {
            Ok(_) => deleted += 1,
            Err(error) => eprintln!("stream {stream} not deleted: {error}"),
        }
    }
    eprintln!("deleted {deleted} streams");
    if args.test_leftovers {
        if let Some(url) = &args.database_url {
            drop_postgres_leftovers(url).await?;
        }
        if let Some(url) = &args.clickhouse_url {
            drop_clickhouse_leftovers(url).await?;
        }
    }
    Ok(())
}

async fn drop_postgres_leftovers(url: &str) -> Result<()> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .context("connect to Postgres")?;
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database")
        .fetch_all(&mut connection)
        .await?;
    let mut dropped = 0;
    for name in names.into_iter().filter(|name| left_by_a_test(name)) {
        // The name was checked to be `herald_` and nine letters and digits: safe to quote.
        match sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut connection)
            .await
        {
            Ok(_) => dropped += 1,
            Err(error) => eprintln!("database {name} not dropped: {error}"),
        }
    }
    eprintln!("dropped {dropped} Postgres databases");
    Ok(())
}

async fn drop_clickhouse_leftovers(url: &str) -> Result<()> {
    let client = reqwest::Client::new();
    let names = client
        .post(url)
        .body("SELECT name FROM system.databases")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("list ClickHouse databases")?
        .text()
        .await?;
    let mut dropped = 0;
    for name in names.lines().filter(|name| left_by_a_test(name)) {
        let dropping = client
            .post(url)
            .body(format!("DROP DATABASE IF EXISTS {name}"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match dropping {
            Ok(_) => dropped += 1,
            Err(error) => eprintln!("ClickHouse database {name} not dropped: {error}"),
        }
    }
    eprintln!("dropped {dropped} ClickHouse databases");
    Ok(())
}

/// Whether a database is one a test run created (`herald_` and its namespace).
fn left_by_a_test(database: &str) -> bool {
    database
        .strip_prefix("herald_")
        .is_some_and(is_test_namespace)
}

/// `t`, `p` or `s` and eight hex digits, in either case.
fn is_test_namespace(namespace: &str) -> bool {
    namespace.len() == 9
        && namespace.starts_with(['T', 'P', 'S', 't', 'p', 's'])
        && namespace[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether a stream belongs to a namespace of a test run (`t`, `p` or `s` and eight hex
/// digits, `tests/`) or of a bench run (`bench_…`).
fn left_by_a_run(stream: &str) -> bool {
    let Some(namespace) = stream
        .strip_suffix("_LOG")
        .or_else(|| stream.strip_suffix("_RETRIES"))
    else {
        return false;
    };
    let test_run = is_test_namespace(namespace) && namespace.starts_with(['T', 'P', 'S']);
    test_run || namespace.starts_with("BENCH_")
}

#[cfg(test)]
mod tests {
    use super::{left_by_a_run, left_by_a_test};

    #[test]
    fn only_databases_of_test_runs_are_taken() {
        for left in ["herald_t01c1b02c", "herald_p3f27b07d", "herald_s6e16a2dd"] {
            assert!(left_by_a_test(left), "{left}");
        }
        for kept in [
            "herald",
            "postgres",
            "template1",
            "bench_max_9724",
            "herald_t01c1b02",
            "herald_shop1234",
            "herald_x01c1b02c",
            "herald_t01c1b02c_copy",
            "system",
        ] {
            assert!(!left_by_a_test(kept), "{kept}");
        }
    }

    #[test]
    fn only_streams_of_test_and_bench_runs_are_taken() {
        for left in [
            "T01C1B02C_LOG",
            "P3F27B07D_RETRIES",
            "S6E16A2DD_LOG",
            "BENCH_11715_LOG",
        ] {
            assert!(left_by_a_run(left), "{left}");
        }
        for kept in [
            "HERALD_LOG",
            "HERALD_RETRIES",
            "T01C1B02C_OTHER",
            "TABCDEFGHI_LOG",
            "SHOP_LOG",
        ] {
            assert!(!left_by_a_run(kept), "{kept}");
        }
    }
}
