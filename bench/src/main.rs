//! `herald-bench`: runs a named load scenario against a running Herald, measured as a
//! customer would: events sent on schedule to the ingest API, their arrivals at a real
//! receiver of its own, an exact ledger of both, and the CPU, memory and writes of every
//! process on the machine (Herald and each server). Writes `<results-dir>/<scenario>.json`;
//! `bench/run.sh` starts Herald for it and draws the plots. Scenarios: see [`scenarios`].

mod calibration;
mod filled_log;
mod herald_histograms;
mod ledger;
mod load;
mod maxima;
mod processes;
mod projection_lag;
mod receiver;
mod report;
mod scenarios;
mod session;

use anyhow::{Context, Result};
use clap::Parser;
use projection_lag::Servers;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
pub struct Args {
    /// One of: quick, max, fanout10, efficiency, saturated, overload, failing, burst, soak,
    /// history, replay.
    #[arg(long)]
    scenario: scenarios::Scenario,
    /// Seconds of load (each scenario has its own default).
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    herald: String,
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// Deliveries/s the scenarios that run at a share of the maximum take as the maximum
    /// (default: `max.json` in the results directory, else a 15 s probe first).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Ingest requests in flight in closed-loop phases.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events accepted but not yet delivered (everywhere the run expects them) a closed loop
    /// allows before it waits.
    #[arg(long, default_value_t = 2_048)]
    window: usize,
    /// Payload size in bytes (approximate).
    #[arg(long, default_value_t = 500)]
    payload_bytes: usize,
    /// Seconds to wait after the load for the last deliveries; what has not arrived by then
    /// is missing, and the run is void.
    #[arg(long, default_value_t = 120)]
    drain_timeout: u64,
    /// Events sent before the measured part of `history` (to 100 endpoints, some ordered,
    /// some failing).
    #[arg(long, default_value_t = 1_000_000)]
    history_events: u64,
    /// Events in the log before `replay` rebuilds both read models from it.
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// The `herald` binary `replay` runs `herald rebuild` with.
    #[arg(long, default_value = "target/release/herald")]
    herald_bin: PathBuf,
    /// Recorded in the result (run.sh passes `git describe`).
    #[arg(long, env = "BENCH_COMMIT", default_value = "unknown")]
    commit: String,
    #[arg(long, env = "HERALD_NATS_URL")]
    nats_url: Option<String>,
    #[arg(long, env = "HERALD_DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, env = "HERALD_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    #[arg(long, env = "HERALD_CLICKHOUSE_DATABASE")]
    clickhouse_database: Option<String>,
    #[arg(long, env = "HERALD_NAMESPACE")]
    namespace: Option<String>,
}

impl Args {
    /// The servers, when all are known: the projection lag is sampled from them.
    fn servers(&self) -> Option<Servers> {
        Some(Servers {
            nats_url: self.nats_url.clone()?,
            database_url: self.database_url.clone()?,
            clickhouse_url: self.clickhouse_url.clone()?,
            clickhouse_database: self.clickhouse_database.clone()?,
            namespace: self.namespace.clone()?,
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    eprintln!("scenario {}", args.scenario.name());
    let result = scenarios::run(&args, &client).await?;
    std::fs::create_dir_all(&args.results_dir)?;
    let path = args
        .results_dir
        .join(format!("{}.json", args.scenario.name()));
    std::fs::write(&path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", scenarios::summary(&result));
    println!("written: {}", path.display());
    // The measured loop's ledger, and those of the loops some scenarios run before it.
    let ledgers = [
        &result["ledger"],
        &result["findings"]["history_ledger"],
        &result["findings"]["at_target"]["ledger"],
    ];
    if ledgers
        .iter()
        .any(|ledger| !ledger.is_null() && ledger["balanced"] != true)
    {
        anyhow::bail!("a ledger does not balance: the run is void");
    }
    Ok(())
}
