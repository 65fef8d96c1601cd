//! A JetStream cluster of `nats-server` processes on loopback, for tests that kill a server
//! under load. Each server has its own ports, data directory and configuration file under one
//! temporary directory; dropping the cluster kills every server and removes the directory.

use crate::wait_until;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CLUSTER_NAME: &str = "herald_test";

/// One server of the cluster.
pub struct NatsNode {
    /// Its server name (`n1`, `n2`, …), as JetStream reports it in stream and cluster info.
    pub name: String,
    pub client_port: u16,
    pub monitor_port: u16,
    config_file: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    pub fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn launch(&mut self) -> Result<()> {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
        let log = std::fs::File::create(&self.log_file)?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {binary} (is the nats-server package installed?)"))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: the server gets no chance to flush or to tell its peers.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// `GET /jsz` on this server's monitoring port.
    async fn jetstream_state(&self, http: &reqwest::Client) -> Option<Value> {
        let response = http
            .get(format!("http://127.0.0.1:{}/jsz", self.monitor_port))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }
}

pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    directory: PathBuf,
}

impl NatsCluster {
    /// Starts `size` clustered servers (file storage) and waits until their JetStream meta
    /// group has a leader that every server follows. One server runs standalone, and is
    /// waited for until its JetStream answers.
    pub async fn start(size: usize) -> Result<Self> {
        anyhow::ensure!((1..=5).contains(&size), "a cluster of 1 to 5 servers");
        let directory = std::env::temp_dir().join(format!(
            "herald-nats-cluster-{}-{:08x}",
            std::process::id(),
            crate::rand_u32()
        ));
        std::fs::create_dir_all(&directory)?;
        // From here on, Drop removes the directory and kills whatever was started.
        let mut cluster = Self {
            nodes: Vec::with_capacity(size),
            directory,
        };
        let ports = free_ports(size * 3)?;
        let route_ports: Vec<u16> = (0..size).map(|index| ports[index * 3 + 1]).collect();
        for index in 0..size {
            let name = format!("n{}", index + 1);
            let (client_port, cluster_port, monitor_port) =
                (ports[index * 3], ports[index * 3 + 1], ports[index * 3 + 2]);
            let routes: Vec<String> = route_ports
                .iter()
                .filter(|&&port| port != cluster_port)
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            let config_file = cluster.directory.join(format!("{name}.conf"));
            std::fs::write(
                &config_file,
                server_config(
                    &name,
                    client_port,
                    cluster_port,
                    monitor_port,
                    &routes,
                    &cluster.directory.join(&name),
                ),
            )?;
            cluster.nodes.push(NatsNode {
                log_file: cluster.directory.join(format!("{name}.log")),
                name,
                client_port,
                monitor_port,
                config_file,
                child: None,
            });
        }
        for node in &mut cluster.nodes {
            node.launch()?;
        }
        cluster.wait_until_formed(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Every server's client URL, comma-separated (what `HERALD_NATS_URL` takes).
    pub fn client_urls(&self) -> String {
        self.urls().join(",")
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::client_url).collect()
    }

    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == server_name)
    }

    /// SIGKILLs one server.
    pub fn kill(&mut self, index: usize) -> Result<()> {
        self.nodes.get_mut(index).context("no such server")?.kill()
    }

    /// Starts a killed server again on its ports and data.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        let node = self.nodes.get_mut(index).context("no such server")?;
        anyhow::ensure!(!node.is_running(), "{} is running", node.name);
        node.launch()
    }

    /// Waits until every running server sees the same JetStream meta leader and that leader
    /// sees all other running servers as current.
    pub async fn wait_until_formed(&self, deadline: Duration) -> Result<String> {
        let http = crate::http_client();
        let running: Vec<&NatsNode> = self.nodes.iter().filter(|node| node.is_running()).collect();
        if let [alone] = self.nodes.as_slice() {
            let result = wait_until(deadline, "the server's JetStream", || async {
                let state = alone.jetstream_state(&http).await?;
                state["config"].is_object().then(|| alone.name.clone())
            })
            .await;
            return result.map_err(|error| anyhow::anyhow!("{error}\n{}", self.log_tails()));
        }
        let result = wait_until(
            deadline,
            "the JetStream meta group to elect a leader",
            || async {
                let mut leaders = Vec::with_capacity(running.len());
                let mut states = Vec::with_capacity(running.len());
                for node in &running {
                    let state = node.jetstream_state(&http).await?;
                    let leader = state["meta_cluster"]["leader"].as_str()?.to_owned();
                    if leader.is_empty() {
                        return None;
                    }
                    leaders.push(leader);
                    states.push((node.name.clone(), state));
                }
                let leader = leaders.first()?.clone();
                if leaders.iter().any(|other| *other != leader) {
                    return None;
                }
                let (_, leader_state) = states.iter().find(|(name, _)| *name == leader)?;
                let current: Vec<&str> = leader_state["meta_cluster"]["replicas"]
                    .as_array()?
                    .iter()
                    .filter(|peer| peer["current"] == true && peer["offline"] != true)
                    .filter_map(|peer| peer["name"].as_str())
                    .collect();
                let all_current = running
                    .iter()
                    .filter(|node| node.name != leader)
                    .all(|node| current.contains(&node.name.as_str()));
                all_current.then_some(leader)
            },
        )
        .await;
        match result {
            Ok(leader) => Ok(leader),
            Err(error) => bail!("{error}\n{}", self.log_tails()),
        }
    }

    /// The last lines of every server's log, for failure messages.
    pub fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("--- {} ---\n{tail}", node.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn server_config(
    name: &str,
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    routes: &[String],
    store_dir: &Path,
) -> String {
    let routes = routes
        .iter()
        .map(|route| format!("\"{route}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "server_name: \"{name}\"\n\
         listen: \"127.0.0.1:{client_port}\"\n\
         http: \"127.0.0.1:{monitor_port}\"\n\
         jetstream {{\n  store_dir: \"{store_dir}\"\n}}\n{cluster}",
        store_dir = store_dir.display(),
        // One server is a standalone JetStream server: a cluster needs routes.
        cluster = if routes.is_empty() {
            String::new()
        } else {
            format!(
                "cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{cluster_port}\"\n  \
                 routes: [{routes}]\n}}\n"
            )
        },
    )
}

/// Distinct free ports on loopback, all held at once while choosing so none repeats.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}
