//! How far the projections trail the log under load. Every 100 ms the sampler reads the
//! log's last sequence, the Postgres projector's checkpoint and the highest sequence stored
//! in ClickHouse. A projection's lag at a sample is how long ago the log first reached what
//! the projection has applied by then (an upper bound, to the sampling interval; for
//! ClickHouse, which only stores attempt records, the time since the log passed its last
//! attempt record).

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const EVERY: Duration = Duration::from_millis(100);

pub struct Servers {
    pub nats_url: String,
    pub database_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub namespace: String,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    log: u64,
    postgres: u64,
    clickhouse: u64,
}

pub struct LagSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    pub async fn start(servers: Servers) -> Result<Self> {
        let nats = async_nats::connect(&servers.nats_url).await?;
        let jetstream = async_nats::jetstream::new(nats);
        let stream_name = herald_schemas::Namespace::new(&servers.namespace)?.log_stream();
        let checkpoint = herald_schemas::Namespace::new(&servers.namespace)?.postgres_checkpoint();
        let mut stream = jetstream.get_stream(&stream_name).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&servers.database_url)
            .await
            .context("connect to Postgres")?;
        let http = reqwest::Client::new();
        let clickhouse = format!(
            "{}/?database={}",
            servers.clickhouse_url, servers.clickhouse_database
        );
        let samples = Arc::new(Mutex::new(Vec::new()));
        let recorded = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let at = Instant::now();
                let log = stream.info().await.map(|info| info.state.last_sequence);
                let postgres: Result<Option<i64>, _> = sqlx::query_scalar(
                    "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
                )
                .bind(&checkpoint)
                .fetch_optional(&pool)
                .await;
                let clickhouse = async {
                    let text = http
                        .post(&clickhouse)
                        .body("SELECT max(log_sequence) FROM attempts")
                        .send()
                        .await?
                        .text()
                        .await?;
                    anyhow::Ok(text.trim().parse::<u64>()?)
                }
                .await;
                if let (Ok(log), Ok(postgres), Ok(clickhouse)) = (log, postgres, clickhouse) {
                    recorded.lock().await.push(Sample {
                        at,
                        log,
                        postgres: postgres.unwrap_or(0).max(0) as u64,
                        clickhouse,
                    });
                }
                tokio::time::sleep_until((at + EVERY).into()).await;
            }
        });
        Ok(Self { samples, task })
    }

    /// Stops sampling; the lags seen, per projection, as sorted durations.
    pub async fn finish(self) -> (Vec<Duration>, Vec<Duration>) {
        self.task.abort();
        let samples = self.samples.lock().await.clone();
        let lag = |applied: fn(&Sample) -> u64| {
            let mut lags: Vec<Duration> = samples
                .iter()
                .filter_map(|sample| {
                    let reached = samples
                        .iter()
                        .find(|earlier| earlier.log >= applied(sample))?;
                    Some(sample.at.saturating_duration_since(reached.at))
                })
                .collect();
            lags.sort();
            lags
        };
        (
            lag(|sample| sample.postgres),
            lag(|sample| sample.clickhouse),
        )
    }
}
