//! What each process of the platform costs: CPU seconds (user + system), memory (PSS, so
//! that Postgres' shared buffers are not counted once per backend) and bytes written to
//! storage, summed per program name, read from `/proc` once a second; and what the machine's
//! CPUs did meanwhile, the time the hypervisor gave to other guests (steal) included.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The programs measured; `herald-bench` is the load generator, reported apart.
pub const PLATFORM: [&str; 4] = ["herald", "nats-server", "postgres", "clickhouse-serv"];
pub const GENERATOR: &str = "herald-bench";

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_mb: f64,
    pub written_bytes: u64,
}

/// CPU seconds of all the machine's CPUs since boot, from the `cpu` line of `/proc/stat`.
/// On a virtual machine whose host is short of CPU, `stolen` grows while the guest wanted to
/// run: the same work then takes longer and queues behind itself, so a run with a share of
/// steal measures the host as much as Herald.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineTimes {
    /// user, nice, system, irq and softirq (guest time is inside user).
    pub busy: f64,
    /// idle and iowait.
    pub idle: f64,
    pub stolen: f64,
    /// CPUs the kernel lists (`cpuN` lines).
    pub cpus: usize,
}

impl MachineTimes {
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| parse_machine_times(&stat, clock_ticks()))
            .unwrap_or_default()
    }
}

/// The first line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`
/// in USER_HZ. Kernels before 2.6.11 had no steal column; it reads as none.
fn parse_machine_times(stat: &str, ticks: f64) -> Option<MachineTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let field = |index: usize| fields.get(index).copied().unwrap_or(0.0) / ticks;
    let cpus = stat
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some(MachineTimes {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        idle: field(3) + field(4),
        stolen: field(7),
        cpus,
    })
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub by_program: BTreeMap<String, Usage>,
    pub machine: MachineTimes,
}

impl Snapshot {
    pub fn take() -> Self {
        let ticks = clock_ticks();
        let machine = MachineTimes::read();
        let mut by_program: BTreeMap<String, Usage> = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self {
                at: Instant::now(),
                by_program,
                machine,
            };
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((program, cpu)) = parse_stat(&stat, ticks) else {
                continue;
            };
            if !PLATFORM.contains(&program) && program != GENERATOR {
                continue;
            }
            let usage = by_program.entry(program.to_owned()).or_default();
            usage.cpu_seconds += cpu;
            usage.memory_mb += proportional_memory_kb(pid) as f64 / 1024.0;
            usage.written_bytes += written_bytes(pid);
        }
        Self {
            at: Instant::now(),
            by_program,
            machine,
        }
    }

    pub fn get(&self, program: &str) -> Usage {
        self.by_program.get(program).copied().unwrap_or_default()
    }
}

/// `(comm, utime + stime in seconds)`; the command name may contain spaces or parentheses,
/// so it is what lies between the first `(` and the last `)`.
fn parse_stat(stat: &str, ticks: f64) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let program = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // After the name: state is field 3 of the line, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((program, (utime + stime) / ticks))
}

fn proportional_memory_kb(pid: &str) -> u64 {
    let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn written_bytes(pid: &str) -> u64 {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
        return 0;
    };
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Linux reports process times in USER_HZ, which is 100 on every architecture it exposes to
/// user space (`sysconf(_SC_CLK_TCK)`), whatever the kernel's own tick rate.
fn clock_ticks() -> f64 {
    100.0
}

/// Takes a snapshot every second until dropped.
pub struct ProcessSampler {
    snapshots: Arc<Mutex<Vec<Snapshot>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProcessSampler {
    pub fn start() -> Self {
        let snapshots = Arc::new(Mutex::new(vec![Snapshot::take()]));
        let recorded = snapshots.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let snapshot = tokio::task::spawn_blocking(Snapshot::take).await;
                if let (Ok(snapshot), Ok(mut all)) = (snapshot, recorded.lock()) {
                    all.push(snapshot);
                }
            }
        });
        Self { snapshots, task }
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.snapshots
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default()
    }
}

impl Drop for ProcessSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "42 (clickhouse serv) S 1 42 42 0 -1 4194560 1 0 0 0 250 150 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(line, 100.0), Some(("clickhouse serv", 4.0)));
    }

    #[test]
    fn the_machine_line_splits_into_busy_idle_and_stolen() {
        let stat = "cpu  100 20 30 400 50 6 7 80 0 0\ncpu0 50 10 15 200 25 3 3 40 0 0\nintr 1 2\n";
        let times = parse_machine_times(stat, 100.0).expect("parses");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(times.busy, 1.63) && close(times.idle, 4.5) && close(times.stolen, 0.8),
            "{times:?}"
        );
        assert_eq!(times.cpus, 1);
        let old_kernel = "cpu  100 20 30 400\n";
        let times = parse_machine_times(old_kernel, 100.0).expect("parses");
        assert_eq!((times.busy, times.idle, times.stolen), (1.5, 4.0, 0.0));
        assert_eq!(parse_machine_times("intr 1 2\n", 100.0), None);
        assert_eq!(parse_machine_times("cpu  1 x 3 4\n", 100.0), None);
    }

    #[test]
    fn this_machine_is_read_from_proc() {
        let before = MachineTimes::read();
        assert!(before.busy + before.idle > 0.0, "{before:?}");
        let after = MachineTimes::read();
        assert!(after.busy >= before.busy && after.stolen >= before.stolen);
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("proc");
        let (program, _) = parse_stat(&stat, clock_ticks()).expect("parses");
        assert!(program.starts_with("herald_bench"), "{program}");
        assert!(proportional_memory_kb("self") > 1_000);
    }
}
