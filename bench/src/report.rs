//! Turns a run's account, process snapshots and lag samples into the numbers a scenario
//! reports: quantiles, rates and CPU per delivery over a window, and per-second timelines
//! for the plots.

use crate::ledger::{Account, Delivery};
use crate::processes::{Snapshot, GENERATOR, PLATFORM};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Quantiles {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| round2(values[((values.len() - 1) as f64 * q).round() as usize]);
        Self {
            count: values.len(),
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A stretch of the run, in seconds from its origin.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    pub from: f64,
    pub to: f64,
}

impl Window {
    pub fn contains(&self, at: f64) -> bool {
        at >= self.from && at < self.to
    }

    pub fn seconds(&self) -> f64 {
        (self.to - self.from).max(1e-9)
    }
}

/// What a window measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub window: Window,
    pub deliveries: usize,
    pub deliveries_per_sec: f64,
    /// Of the deliveries of events due in the window.
    pub accept_to_delivered_ms: Quantiles,
    /// Of the ingest requests due in the window (202 or not).
    pub ingest_ms: Quantiles,
    /// Of the same requests, how late the generator sent them (included in `ingest_ms`): on
    /// a saturated machine the probe's own share of the wait.
    pub ingest_sent_late_ms: Quantiles,
    /// Per program, and `platform`: all four together (the load generator is apart).
    pub cpu_us_per_delivery: BTreeMap<String, f64>,
    pub written_bytes_per_delivery: BTreeMap<String, f64>,
    /// What the whole machine's CPUs did over the same span as the CPU per delivery.
    pub machine_cpu: MachineCpu,
}

/// How the machine's CPUs were used over a span, in cores, all processes together.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MachineCpu {
    pub busy_cores: f64,
    pub idle_cores: f64,
    /// Taken by the hypervisor for other guests while this machine wanted to run.
    pub stolen_cores: f64,
    /// Of the machine's CPUs over the span, the share the host took. (Busy and idle need not
    /// add up to the CPUs: the kernel samples busy time at its ticks but measures idle time
    /// exactly, so with many short sleeps a few per cent go unaccounted; steal is measured.)
    pub stolen_share: f64,
}

/// Above this share of stolen CPU a run measured a contended host: rates fall and latencies
/// grow with the steal, not with the code (`docs/PERFORMANCE.md`, eleventh round).
pub const CONTENDED_STOLEN_SHARE: f64 = 0.05;

impl MachineCpu {
    pub fn between(first: &Snapshot, last: &Snapshot) -> Self {
        let seconds = last.at.duration_since(first.at).as_secs_f64();
        if seconds <= 0.0 {
            return Self::default();
        }
        let (a, b) = (first.machine, last.machine);
        let (busy, idle, stolen) = (b.busy - a.busy, b.idle - a.idle, b.stolen - a.stolen);
        let had = seconds * b.cpus.max(1) as f64;
        Self {
            busy_cores: round2(busy / seconds),
            idle_cores: round2(idle / seconds),
            stolen_cores: round2(stolen / seconds),
            stolen_share: (stolen / had * 1000.0).round() / 1000.0,
        }
    }
}

pub struct Run<'a> {
    pub origin: Instant,
    pub account: &'a Account,
    pub snapshots: &'a [Snapshot],
}

impl Run<'_> {
    pub fn measure(&self, window: Window, counted: &dyn Fn(&Delivery) -> bool) -> Measured {
        let deliveries = self
            .account
            .deliveries
            .iter()
            .filter(|delivery| counted(delivery) && window.contains(delivery.arrived))
            .count();
        let latencies = self
            .account
            .deliveries
            .iter()
            .filter(|delivery| counted(delivery) && window.contains(delivery.due))
            .map(Delivery::latency_ms)
            .collect();
        let answers = || {
            self.account
                .answers
                .iter()
                .filter(|answer| window.contains(answer.due))
        };
        let ingest = answers().map(|answer| answer.latency_ms()).collect();
        let sent_late = answers().map(|answer| answer.sent_late_ms()).collect();
        let (cpu, written, machine_cpu) = self.costs(window);
        Measured {
            window,
            deliveries,
            deliveries_per_sec: round2(deliveries as f64 / window.seconds()),
            accept_to_delivered_ms: Quantiles::of(latencies),
            ingest_ms: Quantiles::of(ingest),
            ingest_sent_late_ms: Quantiles::of(sent_late),
            cpu_us_per_delivery: cpu,
            written_bytes_per_delivery: written,
            machine_cpu,
        }
    }

    fn snapshot_at(&self, offset: f64) -> Option<&Snapshot> {
        self.snapshots.iter().min_by(|a, b| {
            let distance = |s: &Snapshot| (self.offset(s.at) - offset).abs();
            distance(a).total_cmp(&distance(b))
        })
    }

    pub fn offset(&self, at: Instant) -> f64 {
        if at >= self.origin {
            at.duration_since(self.origin).as_secs_f64()
        } else {
            -(self.origin.duration_since(at).as_secs_f64())
        }
    }

    /// CPU µs and bytes written per delivery in `window`, between the snapshots closest to
    /// its ends (deliveries counted over the same span, so a snapshot a little off either end
    /// shifts both alike), and the machine's CPU over that span.
    fn costs(&self, window: Window) -> (BTreeMap<String, f64>, BTreeMap<String, f64>, MachineCpu) {
        let (Some(first), Some(last)) =
            (self.snapshot_at(window.from), self.snapshot_at(window.to))
        else {
            return Default::default();
        };
        let span = Window {
            from: self.offset(first.at),
            to: self.offset(last.at),
        };
        let in_span = self
            .account
            .deliveries
            .iter()
            .filter(|delivery| span.contains(delivery.arrived))
            .count();
        let per = |value: f64| round2(value / in_span.max(1) as f64);
        let (mut cpu, mut written) = (BTreeMap::new(), BTreeMap::new());
        let (mut cpu_total, mut written_total) = (0.0, 0.0);
        for program in PLATFORM.iter().chain([&GENERATOR]) {
            let spent = (last.get(program).cpu_seconds - first.get(program).cpu_seconds) * 1e6;
            let bytes = last
                .get(program)
                .written_bytes
                .saturating_sub(first.get(program).written_bytes) as f64;
            cpu.insert(program.to_string(), per(spent));
            written.insert(program.to_string(), per(bytes));
            if *program != GENERATOR {
                cpu_total += spent;
                written_total += bytes;
            }
        }
        cpu.insert("platform".to_owned(), per(cpu_total));
        written.insert("platform".to_owned(), per(written_total));
        (cpu, written, MachineCpu::between(first, last))
    }

    /// Per second of the run: deliveries and accepted events (by when they happened), and
    /// the latency quantiles of the events due in that second.
    pub fn timeline(&self, seconds: usize) -> Vec<Second> {
        let mut timeline: Vec<Second> = (0..seconds)
            .map(|t| Second {
                t,
                ..Second::default()
            })
            .collect();
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds];
        let mut ingest: Vec<Vec<f64>> = vec![Vec::new(); seconds];
        let slot = |at: f64| (at.max(0.0) as usize).min(seconds.saturating_sub(1));
        for delivery in &self.account.deliveries {
            timeline[slot(delivery.arrived)].deliveries += 1;
            latencies[slot(delivery.due)].push(delivery.latency_ms());
        }
        for answer in &self.account.answers {
            if answer.accepted {
                timeline[slot(answer.answered)].accepted += 1;
            }
            ingest[slot(answer.due)].push(answer.latency_ms());
        }
        for ((second, latencies), ingest) in timeline.iter_mut().zip(latencies).zip(ingest) {
            let latency = Quantiles::of(latencies);
            second.p50_ms = latency.p50;
            second.p99_ms = latency.p99;
            second.ingest_p99_ms = Quantiles::of(ingest).p99;
        }
        timeline
    }

    /// Memory of each program at every snapshot.
    pub fn memory_timeline(&self) -> Vec<PerProgram> {
        self.snapshots
            .iter()
            .map(|snapshot| PerProgram {
                t: round2(self.offset(snapshot.at)),
                values: snapshot
                    .by_program
                    .iter()
                    .map(|(program, usage)| (program.clone(), round2(usage.memory_mb)))
                    .collect(),
            })
            .collect()
    }

    /// CPU cores used by each program between consecutive snapshots, and the cores the host
    /// took (as [`STOLEN`]).
    pub fn cpu_timeline(&self) -> Vec<PerProgram> {
        self.snapshots
            .windows(2)
            .map(|pair| {
                let seconds = pair[1]
                    .at
                    .duration_since(pair[0].at)
                    .as_secs_f64()
                    .max(1e-3);
                let mut values: BTreeMap<String, f64> = pair[1]
                    .by_program
                    .iter()
                    .map(|(program, usage)| {
                        let spent = usage.cpu_seconds - pair[0].get(program).cpu_seconds;
                        (program.clone(), round2(spent.max(0.0) / seconds))
                    })
                    .collect();
                let stolen = pair[1].machine.stolen - pair[0].machine.stolen;
                values.insert(STOLEN.to_owned(), round2(stolen.max(0.0) / seconds));
                PerProgram {
                    t: round2(self.offset(pair[1].at)),
                    values,
                }
            })
            .collect()
    }

    /// Memory per program at the first and last snapshot and its highest.
    pub fn memory(&self) -> BTreeMap<String, MemoryUse> {
        let mut memory: BTreeMap<String, MemoryUse> = BTreeMap::new();
        for snapshot in self.snapshots {
            for (program, usage) in &snapshot.by_program {
                let entry = memory.entry(program.clone()).or_insert(MemoryUse {
                    start: round2(usage.memory_mb),
                    ..MemoryUse::default()
                });
                entry.max = entry.max.max(round2(usage.memory_mb));
                entry.end = round2(usage.memory_mb);
            }
        }
        memory
    }
}

/// The name under which the CPU timeline shows what the host took.
pub const STOLEN: &str = "stolen by the host";

#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    pub t: usize,
    pub deliveries: usize,
    pub accepted: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ingest_p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerProgram {
    pub t: f64,
    pub values: BTreeMap<String, f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MemoryUse {
    pub start: f64,
    pub max: f64,
    pub end: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stolen_cpu_is_a_share_of_what_the_machine_had() {
        use crate::processes::MachineTimes;
        let at = Instant::now();
        let snapshot = |after: u64, busy: f64, idle: f64, stolen: f64| Snapshot {
            at: at + std::time::Duration::from_secs(after),
            by_program: BTreeMap::new(),
            machine: MachineTimes {
                busy,
                idle,
                stolen,
                cpus: 2,
            },
        };
        // Ten seconds of a two-core machine: 12 s busy, 3 s idle, 5 s taken by the host.
        let share = MachineCpu::between(
            &snapshot(0, 100.0, 50.0, 7.0),
            &snapshot(10, 112.0, 53.0, 12.0),
        );
        assert_eq!(
            (
                share.busy_cores,
                share.idle_cores,
                share.stolen_cores,
                share.stolen_share
            ),
            (1.2, 0.3, 0.5, 0.25)
        );
        let same = snapshot(0, 1.0, 1.0, 1.0);
        assert_eq!(MachineCpu::between(&same, &same).stolen_share, 0.0);
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let q = Quantiles::of((1..=100).map(f64::from).collect());
        assert_eq!((q.count, q.p50, q.p99, q.max), (100, 51.0, 99.0, 100.0));
        assert_eq!(Quantiles::of(vec![]).count, 0);
    }
}
