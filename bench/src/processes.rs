//! What each process of the platform costs: CPU seconds (user + system), memory (PSS, so
//! that Postgres' shared buffers are not counted once per backend) and bytes written to
//! storage, summed per program name, read from `/proc` once a second.

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

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub by_program: BTreeMap<String, Usage>,
}

impl Snapshot {
    pub fn take() -> Self {
        let ticks = clock_ticks();
        let mut by_program: BTreeMap<String, Usage> = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self {
                at: Instant::now(),
                by_program,
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
    fn this_process_is_read_from_proc() {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("proc");
        let (program, _) = parse_stat(&stat, clock_ticks()).expect("parses");
        assert!(program.starts_with("herald_bench"), "{program}");
        assert!(proportional_memory_kb("self") > 1_000);
    }
}
