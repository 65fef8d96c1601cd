//! How far the projections trail the log under load. Every 100 ms the sampler reads the
//! log's last sequence and the session tenant's last attempt record's, the Postgres
//! projector's checkpoint and the highest sequence of the tenant's attempts stored in
//! ClickHouse. A projection's lag at a sample is how long ago the log received the first
//! message the projection has not applied yet (to the sampling interval), and zero when it
//! has applied everything there is for it (for ClickHouse, which stores only attempt
//! records: up to the tenant's last attempt record).
//!
//! ClickHouse is asked about the session's tenant only: its rows come first in the table's
//! order, so the question reads them alone. Asked about every row, ten times a second, it read
//! the whole column, and on a stack with history ClickHouse's CPU per delivery read 24–28 µs
//! instead of 15–16, which the harness counted as the platform's (docs/PERFORMANCE.md, fifth
//! round). The projector applies the log in order, so one tenant's lag is everyone's.

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
    /// The log's last attempt record of the session's tenant.
    last_attempt: u64,
    postgres: u64,
    clickhouse: u64,
}

pub struct LagSampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagSampler {
    pub async fn start(servers: Servers, tenant_id: herald_schemas::TenantId) -> Result<Self> {
        let nats = async_nats::connect(&servers.nats_url).await?;
        let jetstream = async_nats::jetstream::new(nats);
        let stream_name = herald_schemas::Namespace::new(&servers.namespace)?.log_stream();
        let checkpoint = herald_schemas::Namespace::new(&servers.namespace)?.postgres_checkpoint();
        let attempts =
            herald_schemas::Namespace::new(&servers.namespace)?.attempt_subject(tenant_id);
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
                let last_attempt = stream
                    .get_last_raw_message_by_subject(&attempts)
                    .await
                    .map_or(0, |message| message.sequence);
                let postgres: Result<Option<i64>, _> = sqlx::query_scalar(
                    "SELECT stream_sequence FROM projector_checkpoints WHERE projector = $1",
                )
                .bind(&checkpoint)
                .fetch_optional(&pool)
                .await;
                let clickhouse = async {
                    let text = http
                        .post(&clickhouse)
                        .body(format!(
                            "SELECT max(log_sequence) FROM attempts WHERE tenant_id = '{tenant_id}'"
                        ))
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
                        last_attempt,
                        postgres: postgres.unwrap_or(0).max(0) as u64,
                        clickhouse,
                    });
                }
                tokio::time::sleep_until((at + EVERY).into()).await;
            }
        });
        Ok(Self { samples, task })
    }

    /// Stops sampling; each sample's lag per projection, in ms, at seconds from `origin`.
    pub async fn finish(self, origin: Instant) -> Vec<LagSample> {
        self.task.abort();
        let samples = self.samples.lock().await.clone();
        // How long ago the log received the first message the projection has not applied;
        // nothing when it has applied all there is for it.
        let lag = |sample: &Sample, applied: u64, all: u64| {
            if applied >= all {
                return Some(0.0);
            }
            let reached = samples.iter().find(|earlier| earlier.log > applied)?;
            Some(
                sample
                    .at
                    .saturating_duration_since(reached.at)
                    .as_secs_f64()
                    * 1000.0,
            )
        };
        samples
            .iter()
            .filter_map(|sample| {
                Some(LagSample {
                    t: sample.at.saturating_duration_since(origin).as_secs_f64(),
                    postgres_ms: lag(sample, sample.postgres, sample.log)?,
                    clickhouse_ms: lag(sample, sample.clickhouse, sample.last_attempt)?,
                })
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LagSample {
    pub t: f64,
    pub postgres_ms: f64,
    pub clickhouse_ms: f64,
}
