//! The scenarios `make bench` runs, each answering one of the questions of
//! `docs/PERFORMANCE.md` (rates given as deliveries per second; "max" is the closed-loop
//! maximum measured by `max`, read from `max.json`):
//!
//! - `quick`: 200 events/s for 5 s to one endpoint; keeps the harness working in `make test`.
//! - `max`: the sustained maximum to one endpoint, closed loop (60 s).
//! - `fanout10`: the same with every event going to 10 endpoints, after an open loop at the
//!   target (12 000 deliveries/s) that shows whether both projections keep up there.
//! - `efficiency`: open loop at 10, 25, 50, 75 and 100 % of max: CPU per delivery and
//!   latency at each load (light-load p50, half-max p99).
//! - `saturated`: every event to 10 endpoints at 150 % of `fanout10`'s maximum: delivery is
//!   saturated while ingest (a tenth of the deliveries) is well within its capacity: does
//!   ingest still answer quickly, and does delivery keep its pace?
//! - `overload`: 150 % of max offered to one endpoint: ingest and delivery together exceed the
//!   machine; how much is still delivered meanwhile, and how long until the backlog is gone.
//! - `failing`: 10 endpoints at half of max; halfway, one starts answering 500 and one stops
//!   answering: how much do the 8 healthy ones notice?
//! - `burst`: 1 000 endpoints at 20 % of max, then 5 s at ten times that: no loss, and how
//!   long until latency is back.
//! - `soak`: half of max for 10 minutes: memory of every process over time.
//! - `history`: `max` on the scenario's empty stack, then a million events (100 endpoints,
//!   some ordered, some failing, so retries are pending), then `max` again on top of that
//!   history: the change between the two closed loops, minutes apart.
//! - `replay`: a million events in the log, then `herald rebuild` of each read model.

use crate::herald_histograms::Scrape;
use crate::ledger::Delivery;
use crate::load::Routing;
use crate::maxima::{fanout10_max_rate, max_rate};
use crate::receiver::Behaviour;
use crate::report::{round2, Measured, Quantiles, Run, Window, CONTENDED_STOLEN_SHARE};
use crate::session::{Endpoints, Finished, Session};
use crate::Args;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Quick,
    Max,
    Fanout10,
    Efficiency,
    Saturated,
    Overload,
    Failing,
    Burst,
    Soak,
    History,
    Replay,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Max => "max",
            Self::Fanout10 => "fanout10",
            Self::Efficiency => "efficiency",
            Self::Saturated => "saturated",
            Self::Overload => "overload",
            Self::Failing => "failing",
            Self::Burst => "burst",
            Self::Soak => "soak",
            Self::History => "history",
            Self::Replay => "replay",
        }
    }

    fn default_duration(self) -> f64 {
        match self {
            Self::Quick => 5.0,
            Self::Efficiency => 100.0,
            Self::Saturated | Self::Overload => 30.0,
            Self::Soak => 600.0,
            _ => 60.0,
        }
    }
}

pub(crate) fn one_endpoint() -> Endpoints {
    Endpoints {
        count: 1,
        routing: Routing::All,
        ordered: |_| false,
        counted: |_| true,
    }
}

pub async fn run(args: &Args, client: &reqwest::Client) -> Result<Value> {
    let scenario = args.scenario;
    let seconds = args.duration.unwrap_or(scenario.default_duration());
    let started_at = chrono::Utc::now();
    // Before any load, while Herald and the servers are idle.
    let calibration = tokio::task::spawn_blocking(crate::calibration::measure).await?;
    let (finished, steps, findings) = match scenario {
        Scenario::Quick => {
            let mut session = Session::open(args, client, one_endpoint()).await?;
            session.open_loop("steady", 200.0, seconds).await;
            (session.finish().await?, Vec::new(), json!({}))
        }
        Scenario::Max => {
            let mut session = Session::open(args, client, one_endpoint()).await?;
            session
                .closed_loop("closed loop", args.concurrency, seconds)
                .await;
            (session.finish().await?, Vec::new(), json!({}))
        }
        Scenario::Fanout10 => {
            // The target itself first, while the stack is fresh and no projection lags: a
            // closed loop runs as fast as it can, past what the target asks of the
            // projections, so its lag does not say whether they keep up at 12 000/s.
            let at_target = fanout10_at_target(args, client, seconds).await?;
            let mut session = Session::open(args, client, ten_endpoints()).await?;
            session
                .closed_loop("closed loop", fanout10_concurrency(args), seconds)
                .await;
            (
                session.finish().await?,
                Vec::new(),
                json!({ "at_target": at_target }),
            )
        }
        Scenario::Efficiency => efficiency(args, client, seconds).await?,
        Scenario::Saturated => {
            let max = fanout10_max_rate(args, client).await?;
            let mut session = Session::open(args, client, ten_endpoints()).await?;
            let before = Scrape::take(client, &args.herald).await?;
            session
                .open_loop("150 % of fanout10's max", 1.5 * max / 10.0, seconds)
                .await;
            let finished = session.finish().await?;
            // Herald's side of ingest's latency, to tell its wait from the machine's.
            let after = Scrape::take(client, &args.herald).await?;
            let in_herald = |name| after.since(&before, name);
            (
                finished,
                Vec::new(),
                json!({
                    "fanout10_max_rate": max,
                    "ingest_in_herald_ms": in_herald("herald_ingest_duration_seconds"),
                    "event_append_in_herald_ms": in_herald("herald_event_append_duration_seconds"),
                }),
            )
        }
        Scenario::Overload => {
            let max = max_rate(args, client).await?;
            let mut session = Session::open(args, client, one_endpoint()).await?;
            // How long the backlog takes to clear is what this measures (minutes, so far).
            session.drain_for_at_least(std::time::Duration::from_secs(600));
            session.open_loop("150 % of max", 1.5 * max, seconds).await;
            (
                session.finish().await?,
                Vec::new(),
                json!({ "max_rate": max }),
            )
        }
        Scenario::Failing => failing(args, client, seconds).await?,
        Scenario::Burst => burst(args, client, seconds).await?,
        Scenario::Soak => {
            let max = max_rate(args, client).await?;
            let mut session = Session::open(args, client, one_endpoint()).await?;
            session.open_loop("50 % of max", 0.5 * max, seconds).await;
            let finished = session.finish().await?;
            let findings = memory_growth(&finished);
            (
                finished,
                Vec::new(),
                json!({ "max_rate": max, "memory": findings }),
            )
        }
        Scenario::History => crate::filled_log::history(args, client, seconds).await?,
        Scenario::Replay => crate::filled_log::replay(args, client).await?,
    };
    let run = finished.run();
    let main = steady_state(&finished);
    let seconds_total = (run.offset(Instant::now()).ceil() as usize).max(1);
    Ok(json!({
        "scenario": scenario.name(),
        "commit": args.commit,
        "machine": machine(calibration),
        "started_at": started_at,
        "duration_s": seconds,
        "endpoints": finished.endpoints,
        "phases": finished.phases,
        "ledger": finished.account.ledger,
        "drained_after_s": finished.drained_after,
        "receiver_refused_requests": finished.refused,
        "measured_window": main.window,
        "deliveries_per_sec": main.deliveries_per_sec,
        "accept_to_delivered_ms": main.accept_to_delivered_ms,
        "ingest_ms": main.ingest_ms,
        "ingest_sent_late_ms": main.ingest_sent_late_ms,
        "projection_lag_ms": projection_lag(&finished),
        "cpu_us_per_delivery": main.cpu_us_per_delivery,
        "written_bytes_per_delivery": main.written_bytes_per_delivery,
        "machine_cpu": main.machine_cpu,
        "rss_mb": run.memory(),
        "steps": steps,
        "findings": findings,
        "timeline": run.timeline(seconds_total),
        "memory_timeline": run.memory_timeline(),
        "cpu_cores_timeline": run.cpu_timeline(),
        "lag_timeline": finished.lag,
    }))
}

pub(crate) fn ten_endpoints() -> Endpoints {
    Endpoints {
        count: 10,
        ..one_endpoint()
    }
}

pub(crate) fn fanout10_concurrency(args: &Args) -> usize {
    (args.concurrency / 4).max(8)
}

pub(crate) type Outcome = (Finished, Vec<Value>, Value);

/// A phase measured from `warm` seconds after its start.
fn step(
    run: &Run<'_>,
    finished: &Finished,
    index: usize,
    warm: f64,
    counted: &dyn Fn(&Delivery) -> bool,
) -> (Measured, Value) {
    let phase = &finished.phases[index];
    let measured = run.measure(
        Window {
            from: (phase.window.from + warm).min(phase.window.to),
            to: phase.window.to,
        },
        counted,
    );
    let value = json!({ "phase": phase, "measured": measured });
    (measured, value)
}

async fn efficiency(args: &Args, client: &reqwest::Client, seconds: f64) -> Result<Outcome> {
    let max = max_rate(args, client).await?;
    let mut session = Session::open(args, client, one_endpoint()).await?;
    let shares = [10.0, 25.0, 50.0, 75.0, 100.0];
    for share in shares {
        let name = format!("{share:.0} % of max");
        session
            .open_loop(&name, max * share / 100.0, seconds / shares.len() as f64)
            .await;
    }
    let finished = session.finish().await?;
    let run = finished.run();
    let measured: Vec<(Measured, Value)> = (0..shares.len())
        .map(|index| step(&run, &finished, index, 2.0, &|_| true))
        .collect();
    let worst_cpu = measured
        .iter()
        .filter_map(|(m, _)| m.cpu_us_per_delivery.get("platform").copied())
        .fold(0.0, f64::max);
    let findings = json!({
        "max_rate": max,
        "light_load_p50_ms": measured[0].0.accept_to_delivered_ms.p50,
        "half_max_p99_ms": measured[2].0.accept_to_delivered_ms.p99,
        "worst_platform_cpu_us_per_delivery": worst_cpu,
    });
    let steps = measured.into_iter().map(|(_, value)| value).collect();
    Ok((finished, steps, findings))
}

async fn failing(args: &Args, client: &reqwest::Client, seconds: f64) -> Result<Outcome> {
    let max = max_rate(args, client).await?;
    let endpoints = Endpoints {
        count: 10,
        routing: Routing::All,
        ordered: |_| false,
        counted: |endpoint| endpoint >= 2,
    };
    let mut session = Session::open(args, client, endpoints).await?;
    let rate = 0.5 * max / 10.0;
    session.open_loop("all healthy", rate, seconds / 2.0).await;
    session.receiver.set_behaviour(0, Behaviour::Fail);
    session.receiver.set_behaviour(1, Behaviour::Hang);
    session
        .open_loop("2 of 10 failing (500, no answer)", rate, seconds / 2.0)
        .await;
    let finished = session.finish().await?;
    let run = finished.run();
    let healthy = |delivery: &Delivery| delivery.endpoint >= 2;
    let (before, before_value) = step(&run, &finished, 0, 3.0, &healthy);
    let (after, after_value) = step(&run, &finished, 1, 3.0, &healthy);
    let change = |a: f64, b: f64| round2(if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 });
    let findings = json!({
        "max_rate": max,
        "healthy_p99_ms_before": before.accept_to_delivered_ms.p99,
        "healthy_p99_ms_after": after.accept_to_delivered_ms.p99,
        "healthy_p99_change_pct": change(before.accept_to_delivered_ms.p99, after.accept_to_delivered_ms.p99),
        "healthy_p50_change_pct": change(before.accept_to_delivered_ms.p50, after.accept_to_delivered_ms.p50),
    });
    Ok((finished, vec![before_value, after_value], findings))
}

async fn burst(args: &Args, client: &reqwest::Client, seconds: f64) -> Result<Outcome> {
    let max = max_rate(args, client).await?;
    let endpoints = Endpoints {
        count: 1_000,
        routing: Routing::OnePerEvent { endpoints: 1_000 },
        ordered: |_| false,
        counted: |_| true,
    };
    let mut session = Session::open(args, client, endpoints).await?;
    let sustained = 0.2 * max;
    let burst_seconds = 5.0;
    let before = (seconds - burst_seconds) / 3.0;
    session.open_loop("sustained", sustained, before).await;
    session
        .open_loop("burst, 10 times", 10.0 * sustained, burst_seconds)
        .await;
    session
        .open_loop(
            "sustained after",
            sustained,
            seconds - burst_seconds - before,
        )
        .await;
    let finished = session.finish().await?;
    let run = finished.run();
    let (baseline, baseline_value) = step(&run, &finished, 0, 3.0, &|_| true);
    let (bursting, burst_value) = step(&run, &finished, 1, 0.0, &|_| true);
    let (_, after_value) = step(&run, &finished, 2, 0.0, &|_| true);
    // Recovered: from the first second after the burst on which every later second's p99
    // (of the events due in it) is back within twice the baseline's (or 20 ms above it).
    let burst_end = finished.phases[1].window.to;
    let load_end = finished.phases[2].window.to;
    let bound =
        (2.0 * baseline.accept_to_delivered_ms.p99).max(baseline.accept_to_delivered_ms.p99 + 20.0);
    let timeline = run.timeline(load_end.ceil() as usize + 1);
    let late: Vec<usize> = timeline
        .iter()
        .filter(|second| {
            (second.t as f64) >= burst_end.floor() && (second.t as f64) < load_end - 1.0
        })
        .filter(|second| second.p99_ms > bound)
        .map(|second| second.t)
        .collect();
    let recovery = late
        .last()
        .map_or(0.0, |&t| round2(t as f64 + 1.0 - burst_end).max(0.0));
    let findings = json!({
        "max_rate": max,
        "sustained_events_per_sec": round2(sustained),
        "baseline_p99_ms": baseline.accept_to_delivered_ms.p99,
        "burst_p99_ms": bursting.accept_to_delivered_ms.p99,
        "recovered_within_ms_bound": round2(bound),
        "recovery_s_after_burst": recovery,
        "recovered_before_the_end": late.last().is_none_or(|&t| (t as f64) < load_end - 2.0),
    });
    Ok((
        finished,
        vec![baseline_value, burst_value, after_value],
        findings,
    ))
}

/// Memory growth of each process between the first and the last minute of a long run, per
/// delivery in between.
fn memory_growth(finished: &Finished) -> Value {
    let run = finished.run();
    let samples = run.memory_timeline();
    let end = samples.last().map_or(0.0, |s| s.t);
    let mean = |program: &str, from: f64, to: f64| {
        let values: Vec<f64> = samples
            .iter()
            .filter(|s| s.t >= from && s.t < to)
            .filter_map(|s| s.values.get(program).copied())
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let (early, late) = ((60.0_f64).min(end / 4.0), (end - 60.0).max(end / 2.0));
    let deliveries = finished
        .account
        .deliveries
        .iter()
        .filter(|d| d.arrived >= early + 30.0 && d.arrived < late + 30.0)
        .count()
        .max(1);
    let mut growth = serde_json::Map::new();
    for program in crate::processes::PLATFORM {
        let first = mean(program, early, early + 60.0);
        let last = mean(program, late, end + 1.0);
        growth.insert(
            program.to_owned(),
            json!({
                "first_minute_mb": round2(first),
                "last_minute_mb": round2(last),
                "growth_mb": round2(last - first),
                "bytes_per_1000_deliveries": round2((last - first) * 1_048_576.0 / deliveries as f64 * 1000.0),
            }),
        );
    }
    Value::Object(growth)
}

/// The target for fan-out 10: deliveries/s sustained with both projections' lag
/// p99 under 2 s.
const FANOUT10_TARGET: f64 = 12_000.0;

/// An open loop at exactly [`FANOUT10_TARGET`] to ten endpoints: what was delivered, and how
/// far each projection trailed meanwhile.
async fn fanout10_at_target(args: &Args, client: &reqwest::Client, seconds: f64) -> Result<Value> {
    let mut session = Session::open(args, client, ten_endpoints()).await?;
    session
        .open_loop("at the target", FANOUT10_TARGET / 10.0, seconds)
        .await;
    let finished = session.finish().await?;
    let measured = steady_state(&finished);
    eprintln!(
        "  at the target: {:.0} deliveries/s",
        measured.deliveries_per_sec
    );
    Ok(json!({
        "offered_deliveries_per_sec": FANOUT10_TARGET,
        "ledger": finished.account.ledger,
        "deliveries_per_sec": measured.deliveries_per_sec,
        "accept_to_delivered_ms": measured.accept_to_delivered_ms,
        "ingest_ms": measured.ingest_ms,
        "projection_lag_ms": projection_lag(&finished),
        "cpu_us_per_delivery": measured.cpu_us_per_delivery,
        "machine_cpu": measured.machine_cpu,
    }))
}

/// Each projection's lag over a finished session, in ms.
fn projection_lag(finished: &Finished) -> Value {
    let lag = |pick: fn(&crate::projection_lag::LagSample) -> f64| {
        Quantiles::of(finished.lag.iter().map(pick).collect())
    };
    json!({
        "postgres": lag(|sample| sample.postgres_ms),
        "clickhouse": lag(|sample| sample.clickhouse_ms),
    })
}

/// Every delivery of a finished session's load, less its first fifth (at most 5 s) while
/// the platform warms up.
pub(crate) fn steady_state(finished: &Finished) -> Measured {
    let load = Window {
        from: finished.phases.first().map_or(0.0, |p| p.window.from),
        to: finished.phases.last().map_or(0.0, |p| p.window.to),
    };
    let warm = (load.to - load.from).min(25.0) / 5.0;
    finished.run().measure(
        Window {
            from: load.from + warm,
            to: load.to,
        },
        &|_: &Delivery| true,
    )
}

/// The machine the run was on, and how fast it was when the run started.
fn machine(calibration: crate::calibration::Calibration) -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|line| line.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory_kb: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    json!({
        "cpu": model,
        "cores": cores,
        "memory_gib": round2(memory_kb / 1_048_576.0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "debian": read("/etc/debian_version").trim(),
        "calibration": calibration,
    })
}

/// The lines printed at the end of a run.
pub fn summary(result: &Value) -> String {
    let q = |value: &Value| {
        format!(
            "p50 {} / p95 {} / p99 {} / max {} ms",
            value["p50"], value["p95"], value["p99"], value["max"]
        )
    };
    let mut lines = vec![
        format!("scenario:             {}", result["scenario"]),
        format!(
            "machine at the start: {} xorshift steps/µs, thread wakeup round trip {} µs",
            result["machine"]["calibration"]["arithmetic_steps_per_us"],
            result["machine"]["calibration"]["wakeup_round_trip_us"]
        ),
        format!("ledger:               {}", result["ledger"]),
        format!("deliveries/s:         {}", result["deliveries_per_sec"]),
        format!(
            "accept→delivered:     {}",
            q(&result["accept_to_delivered_ms"])
        ),
        format!("ingest (202):         {}", q(&result["ingest_ms"])),
        format!(
            "  of which sent late: {}",
            q(&result["ingest_sent_late_ms"])
        ),
        format!(
            "projection lag PG:    {}",
            q(&result["projection_lag_ms"]["postgres"])
        ),
        format!(
            "projection lag CH:    {}",
            q(&result["projection_lag_ms"]["clickhouse"])
        ),
        format!("CPU µs/delivery:      {}", result["cpu_us_per_delivery"]),
        format!(
            "written B/delivery:   {}",
            result["written_bytes_per_delivery"]
        ),
        format!("memory MB:            {}", result["rss_mb"]),
        format!(
            "machine CPU (cores):  busy {} / idle {} / stolen by the host {} ({} %)",
            result["machine_cpu"]["busy_cores"],
            result["machine_cpu"]["idle_cores"],
            result["machine_cpu"]["stolen_cores"],
            percent(&result["machine_cpu"]["stolen_share"]),
        ),
    ];
    if let Some(steps) = result["steps"].as_array() {
        for step in steps {
            let measured = &step["measured"];
            lines.push(format!(
                "  {:<34} {:>9} deliveries/s, p50 {} p99 {} ms, CPU µs/delivery {}, stolen {} %",
                step["phase"]["name"].as_str().unwrap_or(""),
                measured["deliveries_per_sec"],
                measured["accept_to_delivered_ms"]["p50"],
                measured["accept_to_delivered_ms"]["p99"],
                measured["cpu_us_per_delivery"]["platform"],
                percent(&measured["machine_cpu"]["stolen_share"]),
            ));
        }
    }
    if result["findings"]
        .as_object()
        .is_some_and(|f| !f.is_empty())
    {
        lines.push(format!("findings:             {}", result["findings"]));
    }
    let stolen = result["machine_cpu"]["stolen_share"]
        .as_f64()
        .unwrap_or(0.0);
    if stolen > CONTENDED_STOLEN_SHARE {
        lines.push(format!(
            "warning: the host took {} % of this machine's CPU while it measured; its rates, \
             latencies and CPU per delivery are comparable only with runs that were as contended",
            percent(&result["machine_cpu"]["stolen_share"])
        ));
    }
    lines.join("\n")
}

/// A share as a percentage with one decimal.
fn percent(share: &Value) -> f64 {
    (share.as_f64().unwrap_or(0.0) * 1000.0).round() / 10.0
}
