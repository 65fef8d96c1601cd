//! Herald's own latency histograms, read from its `/metrics` before and after a phase: the
//! server's side of a latency the probe measures from outside, so that a report can say how
//! much of a wait was Herald's and how much the machine's (the probe queued behind it).

use anyhow::{Context, Result};
use serde::Serialize;

/// The cumulative bucket counts of every histogram in one scrape.
pub struct Scrape {
    text: String,
}

/// Quantiles in milliseconds, interpolated within the histogram's buckets (which double, so
/// a value is known to within a factor of two at worst).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BucketQuantiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
}

impl Scrape {
    pub async fn take(client: &reqwest::Client, herald: &str) -> Result<Self> {
        let text = client
            .get(format!("{herald}/metrics"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("reading Herald's /metrics")?
            .text()
            .await?;
        Ok(Self { text })
    }

    /// `(upper bound in seconds, cumulative count)` of histogram `name`, in order.
    fn buckets(&self, name: &str) -> Vec<(f64, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (bound, count) = rest.split_once("\"} ")?;
                let bound = match bound {
                    "+Inf" => f64::INFINITY,
                    bound => bound.parse().ok()?,
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect()
    }

    /// Quantiles of what histogram `name` observed between `earlier` and this scrape; `None`
    /// when it has no buckets or observed nothing in between.
    pub fn since(&self, earlier: &Scrape, name: &str) -> Option<BucketQuantiles> {
        let before = earlier.buckets(name);
        let now = self.buckets(name);
        let counts: Vec<(f64, u64)> = now
            .iter()
            .map(|&(bound, count)| {
                let was = before
                    .iter()
                    .find(|(earlier_bound, _)| *earlier_bound == bound)
                    .map_or(0, |&(_, count)| count);
                (bound, count.saturating_sub(was))
            })
            .collect();
        let total = counts.last()?.1;
        (total > 0).then(|| BucketQuantiles {
            count: total,
            p50: quantile(&counts, total, 0.50) * 1000.0,
            p99: quantile(&counts, total, 0.99) * 1000.0,
        })
    }
}

/// The `q` quantile of cumulative `counts`, linear within the bucket it falls in; the last
/// finite bound when it falls in `+Inf`.
fn quantile(counts: &[(f64, u64)], total: u64, q: f64) -> f64 {
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, cumulative) in counts {
        if cumulative as f64 >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let within = (cumulative - lower.1) as f64;
            let share = if within == 0.0 {
                1.0
            } else {
                (rank - lower.1 as f64) / within
            };
            return lower.0 + (bound - lower.0) * share;
        }
        lower = (bound, cumulative);
    }
    lower.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(buckets: &[(&str, u64)]) -> Scrape {
        let mut text = String::from("# TYPE herald_x_seconds histogram\n");
        for (bound, count) in buckets {
            text.push_str(&format!(
                "herald_x_seconds_bucket{{le=\"{bound}\"}} {count}\n"
            ));
        }
        text.push_str("herald_other_bucket{le=\"0.001\"} 99\n");
        Scrape { text }
    }

    #[test]
    fn quantiles_count_only_what_was_observed_in_between() {
        let before = scrape(&[("0.001", 10), ("0.002", 10), ("0.004", 10), ("+Inf", 10)]);
        // 100 new observations: 50 in (1, 2] ms, 49 in (2, 4] ms, 1 beyond.
        let after = scrape(&[("0.001", 10), ("0.002", 60), ("0.004", 109), ("+Inf", 110)]);
        let measured = after.since(&before, "herald_x_seconds").expect("observed");
        assert_eq!(measured.count, 100);
        assert!((measured.p50 - 2.0).abs() < 1e-9, "{measured:?}");
        assert!((measured.p99 - 4.0).abs() < 1e-9, "{measured:?}");
    }

    #[test]
    fn nothing_observed_or_no_such_histogram_is_none() {
        let same = scrape(&[("0.001", 3), ("+Inf", 3)]);
        assert_eq!(same.since(&same, "herald_x_seconds"), None);
        assert_eq!(same.since(&same, "herald_absent_seconds"), None);
    }

    #[test]
    fn a_quantile_within_a_bucket_is_interpolated() {
        let counts = [(0.001, 0), (0.002, 100), (f64::INFINITY, 100)];
        assert!((quantile(&counts, 100, 0.5) - 0.0015).abs() < 1e-12);
        assert!((quantile(&counts, 100, 0.99) - 0.00199).abs() < 1e-12);
    }
}
