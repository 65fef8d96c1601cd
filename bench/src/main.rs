//! `herald-bench`: drives a running Herald with events and measures, on one clock, how long
//! each takes from its 202 (accepted) to its arrival at a real receiver (delivered), then
//! waits until the last one is visible in the read API (projected).
//!
//! Open loop when `--rate` is set (events are sent on schedule whether or not Herald keeps
//! up, so latency includes queueing), closed loop with `--concurrency` in-flight otherwise.

mod projection_lag;

use anyhow::{bail, Context, Result};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use projection_lag::{LagSampler, Servers};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    herald: String,
    #[arg(long, env = "HERALD_ADMIN_TOKEN")]
    admin_token: String,
    /// Events to send.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Events per second (open loop); 0 sends as fast as `concurrency` allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Payload size in bytes (approximate).
    #[arg(long, default_value_t = 500)]
    payload_bytes: usize,
    /// Make the endpoint `ordered` (one delivery at a time, in ingest order).
    #[arg(long)]
    ordered: bool,
    /// Send every event with an idempotency key (as careful producers do).
    #[arg(long)]
    idempotency_keys: bool,
    /// With the four below: sample how far the projections trail the log during the run.
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

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;

    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::with_capacity(args.events)));
    let receiver_url = start_receiver(arrivals.clone()).await?;
    let api_key = create_tenant(&client, &args).await?;
    let response = client
        .post(format!("{}/v1/webhook_endpoints", args.herald))
        .bearer_auth(&api_key)
        .json(&json!({ "url": receiver_url, "ordered": args.ordered }))
        .send()
        .await?;
    if response.status() != 201 {
        bail!(
            "endpoint not created (is HERALD_ALLOWED_TARGET_CIDRS=127.0.0.0/8 set?): {}",
            response.text().await?
        );
    }

    let lag_sampler = match (
        &args.nats_url,
        &args.database_url,
        &args.clickhouse_url,
        &args.clickhouse_database,
        &args.namespace,
    ) {
        (Some(nats), Some(database), Some(clickhouse), Some(clickhouse_database), Some(ns)) => {
            Some(
                LagSampler::start(Servers {
                    nats_url: nats.clone(),
                    database_url: database.clone(),
                    clickhouse_url: clickhouse.clone(),
                    clickhouse_database: clickhouse_database.clone(),
                    namespace: ns.clone(),
                })
                .await?,
            )
        }
        _ => None,
    };
    let padding = "x".repeat(args.payload_bytes.saturating_sub(60));
    let accepted: Arc<Mutex<HashMap<String, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(args.events)));
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.events);
    for index in 0..args.events {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(index as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = permits.clone().acquire_owned().await?;
        let client = client.clone();
        let url = format!("{}/v1/events", args.herald);
        let api_key = api_key.clone();
        let accepted = accepted.clone();
        let mut body =
            json!({ "type": "bench.event", "payload": { "index": index, "padding": padding } });
        if args.idempotency_keys {
            body["idempotency_key"] = json!(format!("bench-{index}"));
        }
        tasks.push(tokio::spawn(async move {
            let result = client
                .post(url)
                .bearer_auth(api_key)
                .json(&body)
                .send()
                .await;
            let at = Instant::now();
            drop(permit);
            let response = result.ok()?;
            if response.status() != 202 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            let event_id = body["event_id"].as_str()?.to_owned();
            accepted.lock().ok()?.insert(event_id.clone(), at);
            Some(event_id)
        }));
    }
    let mut last_event = None;
    let mut rejected = 0usize;
    for task in tasks {
        match task.await? {
            Some(event_id) => last_event = Some(event_id),
            None => rejected += 1,
        }
    }
    let ingest_elapsed = started.elapsed();
    let expected = args.events - rejected;

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let delivered = arrivals.lock().map(|arrivals| arrivals.len()).unwrap_or(0);
        if delivered >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {delivered} of {expected} events delivered within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_elapsed = started.elapsed();

    // Projected: the last accepted event is visible, delivered, through the read API.
    if let Some(event_id) = &last_event {
        loop {
            let response = client
                .get(format!("{}/v1/events/{event_id}", args.herald))
                .bearer_auth(&api_key)
                .send()
                .await?;
            if response.status() == 200 {
                let body: Value = response.json().await?;
                if body["status"] == "delivered" {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("the last event was not projected as delivered within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let projected_elapsed = started.elapsed();
    let lags = match lag_sampler {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };

    let accepted = accepted.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let arrivals = arrivals.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let mut latencies: Vec<Duration> = accepted
        .iter()
        .filter_map(|(event_id, at)| {
            arrivals
                .get(event_id)
                .map(|arrived| arrived.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "events sent:          {}  (rejected {rejected})",
        args.events
    );
    println!(
        "offered rate:         {}",
        if args.rate > 0 {
            format!("{} /s", args.rate)
        } else {
            format!("max, {} in flight", args.concurrency)
        }
    );
    println!(
        "ingest throughput:    {:.0} events/s",
        expected as f64 / ingest_elapsed.as_secs_f64()
    );
    println!(
        "delivery throughput:  {:.0} deliveries/s (all {} delivered after {:.2} s)",
        expected as f64 / delivered_elapsed.as_secs_f64(),
        expected,
        delivered_elapsed.as_secs_f64()
    );
    println!(
        "projected (Postgres): last event visible as delivered after {:.2} s",
        projected_elapsed.as_secs_f64()
    );
    println!(
        "accept→delivered:     p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(quantile(0.5)),
        ms(quantile(0.9)),
        ms(quantile(0.99)),
        ms(quantile(1.0))
    );
    if let Some((postgres, clickhouse)) = lags {
        for (name, lags) in [("Postgres", postgres), ("ClickHouse", clickhouse)] {
            let at = |q: f64| {
                lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or_default()
            };
            println!(
                "projection lag ({name}): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples, 100 ms apart)",
                ms(at(0.5)),
                ms(at(0.99)),
                ms(at(1.0)),
                lags.len()
            );
        }
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn create_tenant(client: &reqwest::Client, args: &Args) -> Result<String> {
    let response = client
        .post(format!("{}/admin/v1/tenants", args.herald))
        .bearer_auth(&args.admin_token)
        .json(&json!({ "name": "bench" }))
        .send()
        .await
        .context("is Herald running?")?;
    if response.status() != 201 {
        bail!("tenant not created: {}", response.text().await?);
    }
    let body: Value = response.json().await?;
    Ok(body["api_key"].as_str().context("api_key")?.to_owned())
}

async fn start_receiver(arrivals: Arrivals) -> Result<String> {
    let router = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let arrivals = arrivals.clone();
            async move {
                let at = Instant::now();
                if let Some(id) = headers
                    .get("webhook-id")
                    .and_then(|value| value.to_str().ok())
                {
                    if let Ok(mut arrivals) = arrivals.lock() {
                        arrivals.entry(id.to_owned()).or_insert(at);
                    }
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}
