//! The scenarios that fill the log with a million events before they measure: `history`
//! (delivery on top of that history, against the same loop on the empty stack) and `replay`
//! (rebuilding both read models from it).

use crate::load::Routing;
use crate::maxima::recorded_max;
use crate::receiver::Behaviour;
use crate::report::round2;
use crate::scenarios::{one_endpoint, steady_state, Outcome};
use crate::session::{Endpoints, Session};
use crate::Args;
use anyhow::{Context, Result};
use serde_json::json;
use std::time::Instant;

pub(crate) async fn history(
    args: &Args,
    client: &reqwest::Client,
    seconds: f64,
) -> Result<Outcome> {
    let endpoints = Endpoints {
        count: 100,
        routing: Routing::OnePerEvent { endpoints: 100 },
        ordered: |endpoint| endpoint % 10 == 0,
        counted: |endpoint| endpoint % 20 != 1,
    };
    // This machine's speed drifts by more than the target's 10 % between runs half an hour
    // apart (docs/PERFORMANCE.md, fourth round), so the fresh baseline is this scenario's own:
    // the same closed loop on its still empty stack, minutes before the one on history.
    let mut fresh = Session::open(args, client, one_endpoint()).await?;
    fresh
        .closed_loop("closed loop, fresh", args.concurrency, seconds)
        .await;
    let fresh = steady_state(&fresh.finish().await?);
    eprintln!("  fresh: {:.0} deliveries/s", fresh.deliveries_per_sec);
    let mut fill = Session::open(args, client, endpoints).await?;
    for endpoint in (1..100).step_by(20) {
        fill.receiver.set_behaviour(endpoint, Behaviour::Fail);
    }
    let started = Instant::now();
    fill.closed_loop_until("history", args.concurrency, args.history_events)
        .await;
    // Only the fill's ledger is kept: its million deliveries' records would otherwise stay
    // in the generator's memory through the measured loop, which a fresh run does not carry.
    let filled = fill.finish().await?.account.ledger;
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "  history: {} events in {fill_seconds:.0} s (ledger balanced: {})",
        filled.accepted, filled.balanced
    );
    let mut session = Session::open(args, client, one_endpoint()).await?;
    session
        .closed_loop("closed loop on history", args.concurrency, seconds)
        .await;
    let finished = session.finish().await?;
    let findings = json!({
        "history_events": filled.accepted,
        "history_deliveries": filled.delivered,
        "history_ledger": filled,
        "history_seconds": round2(fill_seconds),
        "fresh": {
            "deliveries_per_sec": fresh.deliveries_per_sec,
            "cpu_us_per_delivery": fresh.cpu_us_per_delivery,
            "accept_to_delivered_ms": fresh.accept_to_delivered_ms,
            "machine_cpu": fresh.machine_cpu,
        },
        "change_from_fresh_percent": round2(
            100.0 * (steady_state(&finished).deliveries_per_sec / fresh.deliveries_per_sec - 1.0)
        ),
        "max_json_deliveries_per_sec": recorded_max(args),
    });
    Ok((finished, Vec::new(), findings))
}

pub(crate) async fn replay(args: &Args, client: &reqwest::Client) -> Result<Outcome> {
    let mut session = Session::open(args, client, one_endpoint()).await?;
    session
        .closed_loop_until("fill the log", args.concurrency, args.replay_events)
        .await;
    let finished = session.finish().await?;
    let servers = args
        .servers()
        .context("replay needs the servers' addresses")?;
    let nats = async_nats::connect(&servers.nats_url).await?;
    let stream_name = herald_schemas::Namespace::new(&servers.namespace)?.log_stream();
    let mut stream = async_nats::jetstream::new(nats)
        .get_stream(&stream_name)
        .await?;
    let messages = stream.info().await?.state.messages;
    let mut rebuilt = serde_json::Map::new();
    for target in ["postgres", "clickhouse"] {
        eprintln!("  rebuild --target {target} of {messages} log messages");
        let started = Instant::now();
        let status = tokio::process::Command::new(&args.herald_bin)
            .args(["rebuild", "--target", target])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", args.herald_bin.display()))?;
        anyhow::ensure!(status.success(), "herald rebuild --target {target} failed");
        let took = started.elapsed().as_secs_f64();
        rebuilt.insert(
            target.to_owned(),
            json!({
                "seconds": round2(took),
                "log_messages": messages,
                "messages_per_sec": round2(messages as f64 / took),
            }),
        );
    }
    Ok((finished, Vec::new(), json!({ "rebuild": rebuilt })))
}
