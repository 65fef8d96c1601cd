//! How fast `GET /v1/deliveries` pages through a large attempt history: seeds the `attempts`
//! table of a Herald's database with `--attempts` rows (half of them one tenant's, spread
//! over 30 days, 50 endpoints, realistic outcomes; the other half nine other tenants'), then
//! times, one request at a time over one keep-alive connection as a dashboard would, the
//! pages of 100 a user asks for: the newest page, walking `next_cursor` deep, jumping to a
//! random time with `until`, one endpoint's history, one event's attempts, and a rare
//! outcome. Latency is the client's, request sent to body read.
//!
//! Seeding writes rows straight into Postgres (10 million through the delivery pipeline
//! would take half an hour and measure something else); the rows are shaped as the
//! projector writes them. `bench/paging.sh` runs it against a fresh database.

use anyhow::{ensure, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:18081")]
    herald: String,
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    #[arg(long, env = "HERALD_DATABASE_URL")]
    database_url: String,
    /// Attempts to seed in all (every tenant).
    #[arg(long, default_value_t = 10_000_000)]
    attempts: u64,
    /// Requests timed per scenario.
    #[arg(long, default_value_t = 500)]
    requests: usize,
}

const DAYS: i64 = 30;
const ENDPOINTS: u32 = 50;
const SEED_CHUNK: u64 = 500_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let tenant: Value = client
        .post(format!("{}/admin/v1/tenants", args.herald))
        .bearer_auth(&args.admin_token)
        .json(&json!({ "name": "paging-bench" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let tenant_id = tenant["tenant_id"]
        .as_str()
        .context("tenant_id")?
        .to_owned();
    let api_key = tenant["api_key"].as_str().context("api_key")?.to_owned();

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await?;
    seed(&pool, &tenant_id, args.attempts).await?;

    let bench = Pager {
        client,
        base: format!("{}/v1/deliveries", args.herald),
        api_key,
    };
    // Warm up: the first requests pay for connections and plans.
    for _ in 0..20 {
        bench.page("limit=100").await?;
    }
    // Even rows are the tenant's, so its endpoints are the even-numbered ones.
    let endpoint: String = sqlx::query_scalar("SELECT md5($1 || '-endpoint-8')::uuid::text")
        .bind(&tenant_id)
        .fetch_one(&pool)
        .await?;
    let some_event: String = sqlx::query_scalar(
        "SELECT event_id::text FROM attempts WHERE tenant_id = $1::uuid LIMIT 1 OFFSET 12345",
    )
    .bind(&tenant_id)
    .fetch_one(&pool)
    .await?;
    let now = chrono::Utc::now();

    println!("\n| page of 100 | requests | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    report((
        "newest page",
        bench
            .time(args.requests, |_| "limit=100".to_owned())
            .await?,
    ));
    report((
        "walking next_cursor",
        bench.walk("limit=100", args.requests).await?,
    ));
    report((
        "page at a random time (until=)",
        bench
            .time(args.requests, |index| {
                let back = (index as i64 * 7_919) % (DAYS * 86_400);
                let until = now - chrono::Duration::seconds(back);
                format!(
                    "limit=100&until={}",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .await?,
    ));
    report((
        "one endpoint, walking next_cursor",
        bench
            .walk(&format!("limit=100&endpoint_id={endpoint}"), args.requests)
            .await?,
    ));
    report((
        "one event's attempts",
        bench
            .time(args.requests, |_| {
                format!("limit=100&event_id={some_event}")
            })
            .await?,
    ));
    report((
        "outcome=dead_lettered (1 %), walking",
        bench
            .walk("limit=100&outcome=dead_lettered", args.requests)
            .await?,
    ));
    report((
        "outcome=dead_lettered,expired (the dashboard's dead letters), walking",
        bench
            .walk("limit=100&outcome=dead_lettered,expired", args.requests)
            .await?,
    ));

    Ok(())
}

/// One line of the table, printed as soon as the scenario is done.
fn report((name, mut latencies): (&str, Vec<Duration>)) {
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
        latencies[index - 1].as_secs_f64() * 1000.0
    };
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
        latencies.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

async fn seed(pool: &sqlx::PgPool, tenant_id: &str, attempts: u64) -> Result<()> {
    let started = Instant::now();
    sqlx::query("SELECT herald_ensure_attempt_partitions(current_date - $1::int, $1::int + 2)")
        .bind(DAYS as i32)
        .execute(pool)
        .await?;
    let mut done = 0;
    while done < attempts {
        let upto = (done + SEED_CHUNK).min(attempts);
        // Even rows are the measured tenant's, odd ones nine others'. Each row is its own
        // event; endpoints are md5 UUIDs of "<tenant>-endpoint-<n>", so the bench can name
        // one; started_at is spread uniformly over the last 30 days.
        sqlx::query(
            "INSERT INTO attempts (attempt_id, tenant_id, event_id, endpoint_id, attempt_number, \
               scheduled_at, started_at, finished_at, http_status, error_code, error_message, \
               latency_ms, outcome, next_attempt_at, trace_id, log_sequence, response_body_hash) \
             SELECT gen_random_uuid(), t.tenant, gen_random_uuid(), \
               md5(t.tenant::text || '-endpoint-' || (g.i % $4))::uuid, 1, \
               g.started, g.started, g.started + interval '40 ms', \
               CASE WHEN g.r < 0.90 THEN 200 ELSE 503 END, \
               CASE WHEN g.r < 0.90 THEN NULL ELSE 'http_5xx' END, \
               CASE WHEN g.r < 0.90 THEN NULL ELSE 'receiver answered 503' END, \
               40, \
               CASE WHEN g.r < 0.90 THEN 'succeeded' WHEN g.r < 0.97 THEN 'retry_scheduled' \
                    WHEN g.r < 0.99 THEN 'failed' ELSE 'dead_lettered' END, \
               NULL, md5(g.i::text), g.i, md5('body' || g.i) \
             FROM (SELECT i, random() AS r, now() - random() * interval '30 days' AS started \
                   FROM generate_series($2::bigint, $3::bigint - 1) AS i) g \
             CROSS JOIN LATERAL (SELECT CASE WHEN g.i % 2 = 0 THEN $1::uuid \
               ELSE md5('other-tenant-' || (g.i % 9))::uuid END AS tenant) t",
        )
        .bind(tenant_id)
        .bind(done as i64)
        .bind(upto as i64)
        .bind(i64::from(ENDPOINTS))
        .execute(pool)
        .await?;
        done = upto;
        eprintln!(
            "seeded {done} attempts ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query("ANALYZE attempts").execute(pool).await?;
    Ok(())
}

struct Pager {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl Pager {
    async fn page(&self, query: &str) -> Result<(Duration, Value)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}?{query}", self.base))
            .bearer_auth(&self.api_key)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        let took = started.elapsed();
        ensure!(status.is_success(), "{query}: {status} {body}");
        Ok((took, body))
    }

    async fn time(
        &self,
        requests: usize,
        query: impl Fn(usize) -> String,
    ) -> Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(requests);
        for index in 0..requests {
            let (took, body) = self.page(&query(index)).await?;
            ensure!(body["data"].is_array(), "{body}");
            latencies.push(took);
        }
        Ok(latencies)
    }

    /// Follows `next_cursor` from the newest page, `requests` pages deep; at the end of the
    /// history it starts again from the newest page.
    async fn walk(&self, query: &str, requests: usize) -> Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(requests);
        let mut cursor: Option<String> = None;
        for _ in 0..requests {
            let query = match &cursor {
                Some(cursor) => format!("{query}&cursor={cursor}"),
                None => query.to_owned(),
            };
            let (took, body) = self.page(&query).await?;
            latencies.push(took);
            cursor = body["next_cursor"].as_str().map(str::to_owned);
            let rows = body["data"].as_array().map_or(0, Vec::len);
            ensure!(
                rows == 100 || cursor.is_none(),
                "a page short of 100 rows before the end: {query}"
            );
        }
        Ok(latencies)
    }
}
