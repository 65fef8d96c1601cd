//! A stack of its own (NATS, PostgreSQL, ClickHouse) for tests that kill servers: started by
//! `scripts/stack.sh` in a directory under `target/` on free loopback ports, so that killing
//! one of its servers never disturbs other tests or a running `make run`. Stopped and removed
//! when dropped.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Nats,
    Postgres,
    ClickHouse,
}

pub struct PrivateStack {
    dir: PathBuf,
    nats_port: u16,
    nats_monitor_port: u16,
    postgres_port: u16,
    clickhouse_http_port: u16,
    clickhouse_tcp_port: u16,
}

impl PrivateStack {
    /// Starts a new stack (a few seconds: PostgreSQL is initialised from scratch).
    pub fn start(name: &str) -> Result<Self> {
        let dir = repository_root()
            .join("target")
            .join("private-stacks")
            .join(format!("{name}-{:08x}", crate::rand_u32()));
        std::fs::create_dir_all(&dir)?;
        let stack = Self {
            dir,
            nats_port: free_port()?,
            nats_monitor_port: free_port()?,
            postgres_port: free_port()?,
            clickhouse_http_port: free_port()?,
            clickhouse_tcp_port: free_port()?,
        };
        stack.up()?;
        Ok(stack)
    }

    /// Starts whatever is not running (after a kill) and waits until every server answers.
    pub fn up(&self) -> Result<()> {
        self.script("up")
    }

    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.nats_port)
    }

    /// The server's administrative database; tests create their own beside it.
    pub fn database_url(&self) -> String {
        format!(
            "postgres://herald:herald@127.0.0.1:{}/herald",
            self.postgres_port
        )
    }

    pub fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_http_port)
    }

    /// SIGSTOP to the NATS server: its connections stay open and what is sent to it waits
    /// unanswered, as with a server that hangs (a kill ends it as usual).
    pub fn pause_nats(&self) -> Result<()> {
        let pid = read_pid(&self.dir.join("nats/nats.pid"))?;
        let status = Command::new("kill")
            .arg("-STOP")
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -STOP {pid} failed");
        }
        Ok(())
    }

    /// SIGKILL, with no chance to flush or clean up. For PostgreSQL the postmaster and every
    /// backend die at once, as in a crash of the machine's database process tree.
    pub fn kill(&self, server: Server) -> Result<()> {
        let pid = match server {
            Server::Nats => read_pid(&self.dir.join("nats/nats.pid"))?,
            Server::Postgres => read_pid(&self.dir.join("postgres/data/postmaster.pid"))?,
            Server::ClickHouse => read_pid(&self.dir.join("clickhouse/clickhouse.pid"))?,
        };
        let mut victims = vec![pid];
        if server == Server::Postgres {
            victims.extend(children_of(pid));
        }
        let status = Command::new("kill")
            .arg("-KILL")
            .args(victims.iter().map(u32::to_string))
            .status()?;
        if !status.success() {
            bail!("kill -KILL {victims:?} failed");
        }
        // Gone before this returns, so that a restart does not find the old one still alive.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while victims.iter().any(|pid| alive(*pid)) {
            if std::time::Instant::now() > deadline {
                bail!("{server:?} ({victims:?}) still alive 10 s after SIGKILL");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    fn script(&self, command: &str) -> Result<()> {
        let output = Command::new(repository_root().join("scripts/stack.sh"))
            .arg(command)
            .env("HERALD_STACK_DIR", &self.dir)
            .env("HERALD_STACK_NATS_PORT", self.nats_port.to_string())
            .env(
                "HERALD_STACK_NATS_MONITOR_PORT",
                self.nats_monitor_port.to_string(),
            )
            .env("HERALD_STACK_POSTGRES_PORT", self.postgres_port.to_string())
            .env(
                "HERALD_STACK_CLICKHOUSE_HTTP_PORT",
                self.clickhouse_http_port.to_string(),
            )
            .env(
                "HERALD_STACK_CLICKHOUSE_TCP_PORT",
                self.clickhouse_tcp_port.to_string(),
            )
            .output()
            .context("run scripts/stack.sh")?;
        if !output.status.success() {
            bail!(
                "scripts/stack.sh {command} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        if let Err(error) = self.script("down") {
            eprintln!("private stack not stopped cleanly: {error}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn read_pid(file: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no pid in {}", file.display()))
}

fn alive(pid: u32) -> bool {
    // A zombie has exited (it only waits to be reaped by its parent).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}
