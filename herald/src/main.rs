//! `herald <service>`: runs Herald. See `herald --help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::{HeraldConfig, Service};
use tokio_util::sync::CancellationToken;

// Herald allocates many small short-lived buffers per message; glibc malloc spent a fifth of
// the CPU on them under load (perf), mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Webhook delivery: signed, retried, recorded."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Every service in one process.
    All,
    /// The ingest API.
    Command,
    /// Delivery workers.
    Delivery,
    /// Read-model projectors.
    Projector,
    /// The read API.
    Query,
    /// The whole HTTP API (command and query) in one process, delivering nothing.
    Api,
    /// Apply Postgres and ClickHouse migrations and create the JetStream streams, then exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Master keys that seal endpoint secrets at rest.
    Secrets {
        #[command(subcommand)]
        task: SecretsTask,
    },
    /// Rebuild a read model from the log while live traffic goes on, then switch over.
    Rebuild {
        #[arg(long, value_enum)]
        target: RebuildTarget,
        /// Where in the log to start: a sequence number or an RFC 3339 time (default: its
        /// beginning).
        #[arg(long)]
        from: Option<String>,
    },
    /// Compare the log with the Postgres and ClickHouse views (attempts per tenant, endpoint,
    /// outcome and hour); print every difference and exit with 1 if there is any.
    Reconcile {
        /// From when: an RFC 3339 time, or how far back (`90m`, `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: String,
    },
}

#[derive(Subcommand)]
enum SecretsTask {
    /// Print a new master key (`<key_id>:<base64>`) for HERALD_SECRETS_KEY or a key file.
    GenerateKey,
    /// Make a new key current and seal every stored secret again under it. With
    /// HERALD_SECRETS_KEY_FILE the new key is generated into the file (processes reading it
    /// pick it up); with HERALD_SECRETS_KEY put the new key first in every process's value
    /// before running this.
    RotateKey,
    /// Count stored secrets per master key, and name the keys none of them needs any more.
    Status,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RebuildTarget {
    Postgres,
    Clickhouse,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = HeraldConfig::load()?;
    // Only the services export traces: the other tasks make none of the spans exported.
    let serving = matches!(
        cli.task,
        Task::All | Task::Command | Task::Delivery | Task::Projector | Task::Query | Task::Api
    );
    let trace_export = herald::telemetry::init_tracing(serving.then_some(&config.telemetry))?;
    let service = match cli.task {
        Task::All => Service::All,
        Task::Command => Service::Command,
        Task::Delivery => Service::Delivery,
        Task::Projector => Service::Projector,
        Task::Query => Service::Query,
        Task::Api => Service::Api,
        Task::Migrate => {
            let stack = herald::stack::Stack::connect(&config.stack).await?;
            herald::migrate::migrate(&config.stack, &stack).await?;
            println!("migrations applied, streams ready");
            return Ok(());
        }
        Task::Rebuild { target, from } => {
            let start_at = herald::rebuild::parse_start(from.as_deref())?;
            let stack = herald::stack::Stack::connect(&config.stack).await?;
            match target {
                RebuildTarget::Postgres => {
                    let rebuilt = herald::rebuild::rebuild_postgres(&stack, start_at).await?;
                    println!(
                        "postgres rebuilt from sequence {}, switched over at {}: {} events, {} \
                         deliveries, {} attempts",
                        rebuilt.started_at_sequence,
                        rebuilt.switched_at_sequence,
                        rebuilt.events,
                        rebuilt.deliveries,
                        rebuilt.attempts
                    );
                }
                RebuildTarget::Clickhouse => {
                    let rebuilt =
                        herald::rebuild::rebuild_clickhouse(&config.stack, &stack, start_at)
                            .await?;
                    println!(
                        "clickhouse rebuilt from sequence {} ({} earlier attempt rows kept), \
                         switched over at {}: {} attempts; {} partitions replaced, {} dropped",
                        rebuilt.started_at_sequence,
                        rebuilt.attempts_kept,
                        rebuilt.switched_at_sequence,
                        rebuilt.attempts,
                        rebuilt.partitions_replaced,
                        rebuilt.partitions_dropped
                    );
                }
            }
            return Ok(());
        }
        Task::Reconcile { since } => {
            let since = herald::reconcile::parse_since(&since, chrono::Utc::now())?;
            let stack = herald::stack::Stack::connect(&config.stack).await?;
            let found = herald::reconcile::reconcile(&stack, since).await?;
            for difference in &found.differences {
                println!("{difference}");
            }
            println!(
                "{} attempt records in the log since {} (through sequence {}); {} differences",
                found.attempts_in_log,
                found.since.to_rfc3339(),
                found.through_sequence,
                found.differences.len()
            );
            std::process::exit(if found.differences.is_empty() { 0 } else { 1 });
        }
        Task::Secrets { task } => {
            if let SecretsTask::GenerateKey = task {
                println!("{}", herald::secrets_admin::generate_key());
                return Ok(());
            }
            let stack = herald::stack::Stack::connect(&config.stack).await?;
            herald::migrate::migrate(&config.stack, &stack).await?;
            if let SecretsTask::RotateKey = task {
                let rotation =
                    herald::secrets_admin::rotate_key(&config.secrets, &stack.pool).await?;
                println!(
                    "current key {}{}; {} endpoints sealed again, {} values unreadable",
                    rotation.current_key_id,
                    if rotation.generated {
                        " (new, written to the key file)"
                    } else {
                        ""
                    },
                    rotation.report.endpoints_resealed,
                    rotation.report.unreadable
                );
                for (key_id, count) in &rotation.values_by_key {
                    println!("{key_id}: {count} values");
                }
                return Ok(());
            }
            let (counts, unused) =
                herald::secrets_admin::status(&config.secrets, &stack.pool).await?;
            if counts.is_empty() {
                println!("no endpoint secrets are stored yet");
            }
            for (key_id, count) in &counts {
                println!("{key_id}: {count} values");
            }
            for key_id in &unused {
                println!("{key_id}: no value needs it; it may be removed from the keyring");
            }
            return Ok(());
        }
        Task::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&herald::openapi::document())?
            );
            return Ok(());
        }
    };
    let listener = tokio::net::TcpListener::bind(&config.stack.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.stack.listen_addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let ran = herald::run(service, config, listener, shutdown).await;
    if let Some(trace_export) = trace_export {
        trace_export.shutdown().await;
    }
    ran?;
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new work; finishing in-flight work");
    shutdown.cancel();
}
