//! The maxima that other scenarios run at a share of: `max` (one endpoint) and `fanout10`,
//! read from their last result files, or probed for 15 s when there is none.

use crate::report::Window;
use crate::scenarios::{fanout10_concurrency, one_endpoint, ten_endpoints, Scenario};
use crate::session::{Finished, Session};
use crate::Args;
use anyhow::Result;
use serde_json::Value;

/// The maximum the last `max` run measured, if its result is in the results directory.
pub fn recorded_max(args: &Args) -> Option<f64> {
    recorded_rate(args, Scenario::Max)
}

/// Deliveries/s taken as the maximum: `--max-rate`, else `max.json`, else a 15 s probe.
pub async fn max_rate(args: &Args, client: &reqwest::Client) -> Result<f64> {
    match args.max_rate {
        Some(rate) => Ok(rate),
        None => measured_maximum(args, client, Scenario::Max).await,
    }
}

/// Deliveries/s taken as the maximum with fan-out 10: `fanout10.json`, else a 15 s probe.
pub async fn fanout10_max_rate(args: &Args, client: &reqwest::Client) -> Result<f64> {
    measured_maximum(args, client, Scenario::Fanout10).await
}

/// The deliveries/s a scenario measured in its last run, from its result file.
fn recorded_rate(args: &Args, scenario: Scenario) -> Option<f64> {
    let file = args.results_dir.join(format!("{}.json", scenario.name()));
    let bytes = std::fs::read(file).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["deliveries_per_sec"].as_f64()
}

/// `scenario`'s (`max` or `fanout10`) last result, else its closed loop for 15 s.
async fn measured_maximum(
    args: &Args,
    client: &reqwest::Client,
    scenario: Scenario,
) -> Result<f64> {
    let name = scenario.name();
    if let Some(rate) = recorded_rate(args, scenario) {
        eprintln!("  {name}: {rate:.0} deliveries/s (from {name}.json)");
        return Ok(rate);
    }
    eprintln!("  no {name}.json: probing its maximum for 15 s first");
    let (endpoints, concurrency) = match scenario {
        Scenario::Fanout10 => (ten_endpoints(), fanout10_concurrency(args)),
        _ => (one_endpoint(), args.concurrency),
    };
    let mut probe = Session::open(args, client, endpoints).await?;
    probe.closed_loop("probe", concurrency, 15.0).await;
    let rate = probed_rate(probe.finish().await?);
    eprintln!("  {name}: {rate:.0} deliveries/s (probed)");
    Ok(rate)
}

/// Deliveries/s of a 15 s probe's last 12 s.
fn probed_rate(finished: Finished) -> f64 {
    finished
        .run()
        .measure(
            Window {
                from: 3.0,
                to: 15.0,
            },
            &|_| true,
        )
        .deliveries_per_sec
}
