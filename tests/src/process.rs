//! Herald as a child process, for tests that kill it (SIGKILL) or stop it (SIGTERM) and
//! start it again on the same resources.

use crate::{
    create_database, env_or, http_client, rand_u32, replace_database, wait_until, TestHerald,
};
use anyhow::{Context, Result};
use herald::config::StackConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the servers a Herald process uses are.
#[derive(Clone, Debug)]
pub struct StackUrls {
    pub nats_url: String,
    /// A database on the PostgreSQL server; tests create their own beside it.
    pub database_url: String,
    pub clickhouse_url: String,
}

impl StackUrls {
    /// The shared stack of `make test` (or what `HERALD_*_URL` point at).
    pub fn from_env() -> Self {
        let defaults = StackConfig::default();
        Self {
            nats_url: env_or("HERALD_NATS_URL", &defaults.nats_url),
            database_url: env_or("HERALD_DATABASE_URL", &defaults.database_url),
            clickhouse_url: env_or("HERALD_CLICKHOUSE_URL", &defaults.clickhouse_url),
        }
    }
}

impl From<&crate::private_stack::PrivateStack> for StackUrls {
    fn from(stack: &crate::private_stack::PrivateStack) -> Self {
        Self {
            nats_url: stack.nats_url(),
            database_url: stack.database_url(),
            clickhouse_url: stack.clickhouse_url(),
        }
    }
}

/// A setting (not read by Herald) naming a file that gets the process's stdout and stderr.
pub const OUTPUT_FILE_SETTING: &str = "HERALD_TEST_OUTPUT_FILE";

pub struct HeraldProcess {
    binary: PathBuf,
    service: String,
    environment: Vec<(String, String)>,
    child: Option<Child>,
    pub herald: TestHerald,
}

impl HeraldProcess {
    /// Starts `herald all` on fresh resources of the shared stack; `settings` are extra
    /// `HERALD_*` variables.
    pub async fn start(binary: impl Into<PathBuf>, settings: &[(&str, &str)]) -> Result<Self> {
        Self::start_service_on(binary, &StackUrls::from_env(), "all", settings).await
    }

    /// Starts `herald <service>` on fresh resources (a new database, ClickHouse database and
    /// log namespace) of the servers at `stack`.
    pub async fn start_service_on(
        binary: impl Into<PathBuf>,
        stack: &StackUrls,
        service: &str,
        settings: &[(&str, &str)],
    ) -> Result<Self> {
        let run_id = format!("p{:08x}", rand_u32());
        let database = format!("herald_{run_id}");
        create_database(&stack.database_url, &database).await?;
        let port = free_port()?;
        let herald = TestHerald {
            base_url: format!("http://127.0.0.1:{port}"),
            nats_url: stack.nats_url.clone(),
            namespace: run_id.clone(),
            admin_token: format!("adm_{run_id}"),
            database_url: replace_database(&stack.database_url, &database),
            clickhouse_url: stack.clickhouse_url.clone(),
            clickhouse_database: database.clone(),
        };
        let mut environment: Vec<(String, String)> = vec![
            ("HERALD_NATS_URL".into(), stack.nats_url.clone()),
            ("HERALD_DATABASE_URL".into(), herald.database_url.clone()),
            (
                "HERALD_CLICKHOUSE_URL".into(),
                herald.clickhouse_url.clone(),
            ),
            ("HERALD_CLICKHOUSE_DATABASE".into(), database),
            ("HERALD_NAMESPACE".into(), run_id),
            ("HERALD_LISTEN_ADDR".into(), format!("127.0.0.1:{port}")),
            ("HERALD_ADMIN_TOKEN".into(), herald.admin_token.clone()),
            ("HERALD_ALLOWED_TARGET_CIDRS".into(), "127.0.0.0/8".into()),
            ("HERALD_SECRETS_KEY".into(), crate::test_secrets_key()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        environment.extend(
            settings
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        let mut process = Self {
            binary: binary.into(),
            service: service.to_owned(),
            environment,
            child: None,
            herald,
        };
        process.launch().await?;
        Ok(process)
    }

    /// Starts the process again on the same resources.
    pub async fn launch(&mut self) -> Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .arg(&self.service)
            .envs(self.environment.iter().cloned())
            .stdin(Stdio::null());
        // Tests that read what the process printed name a file to append it to.
        if let Some((_, path)) = self
            .environment
            .iter()
            .find(|(name, _)| name == OUTPUT_FILE_SETTING)
        {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open {path}"))?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        self.child = Some(child);
        let client = http_client();
        let url = format!("{}/healthz", self.herald.base_url);
        wait_until(
            Duration::from_secs(60),
            "herald process /healthz",
            || async {
                let response = client.get(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await
    }

    /// Runs a task of the binary (`herald reconcile …`) on the same resources, to its end.
    pub async fn run_task(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .envs(self.environment.iter().cloned())
            .stdin(Stdio::null());
        let what = format!("{} {}", self.binary.display(), args.join(" "));
        tokio::task::spawn_blocking(move || command.output())
            .await?
            .with_context(|| format!("run {what}"))
    }

    /// Another process on the same resources (log, databases) running `service`, with its
    /// own HTTP port (it answers `/healthz` whatever the service).
    pub async fn sibling(&self, service: &str) -> Result<Self> {
        let port = free_port()?;
        let mut environment = self.environment.clone();
        for (name, value) in &mut environment {
            if name == "HERALD_LISTEN_ADDR" {
                *value = format!("127.0.0.1:{port}");
            }
        }
        let mut herald = self.herald.clone();
        herald.base_url = format!("http://127.0.0.1:{port}");
        let mut process = Self {
            binary: self.binary.clone(),
            service: service.to_owned(),
            environment,
            child: None,
            herald,
        };
        process.launch().await?;
        Ok(process)
    }

    /// How the process ended, if it has (it is never meant to end on its own).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit; returns how long the exit took.
    pub async fn terminate(&mut self) -> Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = tokio::task::spawn_blocking(move || child.wait()).await??;
        anyhow::ensure!(exit.success(), "herald exited with {exit} after SIGTERM");
        Ok(started.elapsed())
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
