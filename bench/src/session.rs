//! One tenant's run against Herald: its endpoints (pointing at the bench's receiver), the
//! load phases sent to them, and, once everything sent is answered and delivered (or the
//! drain deadline passed), the account of it all with the process snapshots and lag samples
//! taken meanwhile.

use crate::ledger::{account, Account};
use crate::load::{Ingest, Routing};
use crate::processes::{ProcessSampler, Snapshot};
use crate::projection_lag::{LagSample, LagSampler};
use crate::receiver::Receiver;
use crate::report::{round2, Run, Window};
use crate::Args;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a scenario asks of its tenant's endpoints.
pub struct Endpoints {
    pub count: usize,
    pub routing: Routing,
    pub ordered: fn(usize) -> bool,
    /// Whether the ledger expects deliveries at an endpoint (the scenario does not make it
    /// fail).
    pub counted: fn(usize) -> bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    /// Events per second offered (open loop), or `None` for a closed loop.
    pub offered_events_per_sec: Option<f64>,
    pub concurrency: Option<usize>,
    pub window: Window,
}

pub struct Session {
    pub origin: Instant,
    pub receiver: Receiver,
    pub ingest: Ingest,
    pub endpoints: Endpoints,
    pub phases: Vec<Phase>,
    processes: ProcessSampler,
    lag: Option<LagSampler>,
    drain_timeout: Duration,
    window: usize,
}

pub struct Finished {
    pub origin: Instant,
    pub account: Account,
    pub snapshots: Vec<Snapshot>,
    pub lag: Vec<LagSample>,
    pub phases: Vec<Phase>,
    /// Seconds from the end of the load until everything counted had arrived.
    pub drained_after: f64,
    pub endpoints: usize,
    /// Requests the receiver answered with a failure or not at all, as told.
    pub refused: u64,
}

impl Finished {
    pub fn run(&self) -> Run<'_> {
        Run {
            origin: self.origin,
            account: &self.account,
            snapshots: &self.snapshots,
        }
    }
}

impl Session {
    pub async fn open(args: &Args, client: &reqwest::Client, endpoints: Endpoints) -> Result<Self> {
        let undelivered = Arc::new(tokio::sync::Semaphore::new(0));
        let receiver = Receiver::start(
            endpoints.count,
            endpoints.counted,
            undelivered.clone(),
            1 << 16,
        )
        .await?;
        let (tenant_id, api_key) = create_tenant(client, args).await?;
        create_endpoints(client, args, &api_key, &receiver, &endpoints).await?;
        let ingest = Ingest::new(
            client.clone(),
            &args.herald,
            api_key,
            &endpoints,
            undelivered,
            args.payload_bytes,
        );
        let lag = match args.servers() {
            Some(servers) => Some(LagSampler::start(servers, tenant_id).await?),
            None => None,
        };
        Ok(Self {
            origin: Instant::now(),
            receiver,
            ingest,
            endpoints,
            phases: Vec::new(),
            processes: ProcessSampler::start(),
            lag,
            drain_timeout: Duration::from_secs(args.drain_timeout),
            window: args.window,
        })
    }

    /// Waits at least `timeout` for the last deliveries: for scenarios that measure how long
    /// a backlog takes to clear.
    pub fn drain_for_at_least(&mut self, timeout: Duration) {
        self.drain_timeout = self.drain_timeout.max(timeout);
    }

    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub async fn open_loop(&mut self, name: &str, events_per_sec: f64, seconds: f64) {
        let from = self.now();
        eprintln!("  {name}: open loop, {events_per_sec:.0} events/s for {seconds:.0} s");
        self.ingest
            .open_loop(events_per_sec, Duration::from_secs_f64(seconds))
            .await;
        self.phases.push(Phase {
            name: name.to_owned(),
            offered_events_per_sec: Some(round2(events_per_sec)),
            concurrency: None,
            window: Window {
                from,
                to: self.now(),
            },
        });
    }

    pub async fn closed_loop(&mut self, name: &str, concurrency: usize, seconds: f64) {
        eprintln!(
            "  {name}: closed loop, {concurrency} requests and {} events in flight for {seconds:.0} s",
            self.window
        );
        self.closed(name, concurrency, Duration::from_secs_f64(seconds), None)
            .await;
    }

    /// A closed loop until `events` are sent.
    pub async fn closed_loop_until(&mut self, name: &str, concurrency: usize, events: u64) {
        eprintln!("  {name}: closed loop, {concurrency} in flight for {events} events");
        self.closed(name, concurrency, Duration::from_secs(86_400), Some(events))
            .await;
    }

    async fn closed(
        &mut self,
        name: &str,
        concurrency: usize,
        duration: Duration,
        limit: Option<u64>,
    ) {
        let from = self.now();
        self.ingest
            .closed_loop(concurrency, self.window, duration, limit)
            .await;
        self.phases.push(Phase {
            name: name.to_owned(),
            offered_events_per_sec: None,
            concurrency: Some(concurrency),
            window: Window {
                from,
                to: self.now(),
            },
        });
    }

    /// Waits for every answer, then for every expected delivery (up to the drain timeout),
    /// and accounts for the run.
    pub async fn finish(self) -> Result<Finished> {
        let sent = self.ingest.finish().await;
        let load_ended = self.now();
        let counted = self.endpoints.counted;
        let expected: u64 = sent
            .iter()
            .filter(|event| event.event_id.is_some())
            .map(|event| {
                (self.endpoints.routing)
                    .endpoints_of(event.index, self.endpoints.count)
                    .filter(|&endpoint| counted(endpoint))
                    .count() as u64
            })
            .sum();
        let deadline = Instant::now() + self.drain_timeout;
        loop {
            let arrived = self.receiver.arrivals_at(&counted);
            if arrived >= expected {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "  drain: {arrived} of {expected} deliveries after {} s; the rest count as missing",
                    self.drain_timeout.as_secs()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained_after = round2(self.now() - load_ended);
        // A last snapshot after the drain, so the costs of the tail are counted.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let arrivals = self.receiver.take_arrivals();
        let account = account(
            self.origin,
            &sent,
            &arrivals,
            self.receiver.duplicates(),
            self.endpoints.routing,
            self.endpoints.count,
            &counted,
        );
        let lag = match self.lag {
            Some(sampler) => sampler.finish(self.origin).await,
            None => Vec::new(),
        };
        Ok(Finished {
            origin: self.origin,
            account,
            snapshots: self.processes.snapshots(),
            lag,
            phases: self.phases,
            drained_after,
            endpoints: self.endpoints.count,
            refused: self.receiver.refused(),
        })
    }
}

/// The new tenant's id and API key.
async fn create_tenant(
    client: &reqwest::Client,
    args: &Args,
) -> Result<(herald_schemas::TenantId, String)> {
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
    let tenant_id = body["tenant_id"]
        .as_str()
        .context("tenant_id")?
        .parse()
        .context("tenant_id")?;
    Ok((
        tenant_id,
        body["api_key"].as_str().context("api_key")?.to_owned(),
    ))
}

async fn create_endpoints(
    client: &reqwest::Client,
    args: &Args,
    api_key: &str,
    receiver: &Receiver,
    endpoints: &Endpoints,
) -> Result<()> {
    use futures::StreamExt;
    let results: Vec<Result<()>> = futures::stream::iter(0..endpoints.count)
        .map(|endpoint| async move {
            let mut body = json!({
                "url": receiver.url(endpoint),
                "ordered": (endpoints.ordered)(endpoint),
            });
            if let Some(filter) = endpoints.routing.endpoint_filter(endpoint) {
                body["events"] = json!(filter);
            }
            let response = client
                .post(format!("{}/v1/webhook_endpoints", args.herald))
                .bearer_auth(api_key)
                .json(&body)
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "endpoint not created (is HERALD_ALLOWED_TARGET_CIDRS=127.0.0.0/8 set?): {}",
                    response.text().await?
                );
            }
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}
