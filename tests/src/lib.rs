//! The end-to-end test harness: one real Herald (`herald all`, in-process on its own runtime)
//! per test binary, against the real NATS, Postgres and ClickHouse of the local stack, with
//! resources named uniquely for this run; and real HTTP receivers that tests program.

pub mod kill_load;
pub mod nats_cluster;
pub mod private_stack;
pub mod process;
pub mod receiver;
pub mod signature;
pub mod view_digest;

use anyhow::{bail, Context, Result};
use herald::config::StackConfig;
use herald::{HeraldConfig, Service};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where a running Herald is and the resources it uses.
#[derive(Clone, Debug)]
pub struct TestHerald {
    pub base_url: String,
    pub nats_url: String,
    pub namespace: String,
    pub admin_token: String,
    pub database_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
}

static HERALD: OnceLock<TestHerald> = OnceLock::new();

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Starts Herald on first use.
pub fn herald() -> &'static TestHerald {
    HERALD.get_or_init(|| {
        start().expect("test Herald starts (is the stack up? `make test` starts it)")
    })
}

fn start() -> Result<TestHerald> {
    // HERALD_TEST_LOG=<filter> (e.g. `warn,herald_delivery=debug`) writes the in-process
    // Herald's logs to stderr, for finding out why a test failed.
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    start_with(|_| {})
}

/// Starts a Herald of its own for this test process, configured like the shared one and
/// then by `configure`.
pub fn start_with(configure: impl FnOnce(&mut HeraldConfig)) -> Result<TestHerald> {
    let run_id = format!("t{:08x}", rand_u32());
    let defaults = StackConfig::default();
    let server_database_url = env_or("HERALD_DATABASE_URL", &defaults.database_url);
    let database_name = format!("herald_{run_id}");
    let database_url = replace_database(&server_database_url, &database_name);
    let clickhouse_url = env_or("HERALD_CLICKHOUSE_URL", &defaults.clickhouse_url);
    let admin_token = format!("adm_{run_id}_{:08x}", rand_u32());
    let stack = StackConfig {
        nats_url: env_or("HERALD_NATS_URL", &defaults.nats_url),
        database_url: database_url.clone(),
        database_max_connections: 16,
        clickhouse_url: clickhouse_url.clone(),
        clickhouse_database: database_name.clone(),
        namespace: run_id.clone(),
        listen_addr: "127.0.0.1:0".to_owned(),
        log_replicas: defaults.log_replicas,
        log_max_age_days: defaults.log_max_age_days,
        log_linger_ms: defaults.log_linger_ms,
    };
    let mut config = HeraldConfig {
        stack,
        ..HeraldConfig::default()
    };
    config.command.admin_token = Some(admin_token.clone().into());
    config.secrets.secrets_key = Some(test_secrets_key().into());
    config.command.allowed_target_cidrs = "127.0.0.0/8,::1/128".to_owned();
    config.delivery.allowed_target_cidrs = "127.0.0.0/8,::1/128".to_owned();
    config.delivery.request_timeout_ms = 2_000;
    config.delivery.connect_timeout_ms = 1_000;
    config.delivery.retry_initial_delay_ms = 300;
    config.delivery.retry_multiplier = 2.0;
    config.delivery.retry_max_delay_ms = 2_000;
    config.delivery.retry_max_attempts = 4;
    config.delivery.breaker_failure_threshold = 3;
    config.delivery.breaker_open_ms = 1_000;
    config.projector.clickhouse_flush_ms = 200;
    config.query.slo_evaluation_ms = 300;
    configure(&mut config);

    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("herald-under-test".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let prepared = create_database(&server_database_url, &database_name).await;
                if let Err(error) = prepared {
                    let _ = address_sender.send(Err(error));
                    return;
                }
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = address_sender.send(Err(error.into()));
                        return;
                    }
                };
                let address = listener.local_addr().expect("bound");
                let mut service = tokio::spawn(herald::run(
                    Service::All,
                    config,
                    listener,
                    CancellationToken::new(),
                ));
                // Ready when /healthz says every store answers.
                let client = http_client();
                let readiness = wait_until(Duration::from_secs(60), "herald /healthz", || async {
                    let response = client
                        .get(format!("http://{address}/healthz"))
                        .send()
                        .await
                        .ok()?;
                    response.status().is_success().then_some(())
                });
                let ready = tokio::select! {
                    ready = readiness => ready,
                    stopped = &mut service => Err(anyhow::anyhow!("herald stopped while starting: {stopped:?}")),
                };
                let failed = ready.is_err();
                let _ = address_sender.send(ready.map(|()| address));
                if failed {
                    return;
                }
                // Runs for the life of the test process.
                if let Ok(Err(error)) = service.await {
                    eprintln!("herald under test stopped: {error}");
                }
            });
        })?;
    let address = address_receiver.recv_timeout(Duration::from_secs(90))??;
    Ok(TestHerald {
        base_url: format!("http://{address}"),
        nats_url: env_or("HERALD_NATS_URL", &defaults.nats_url),
        namespace: run_id.clone(),
        admin_token,
        database_url,
        clickhouse_url,
        clickhouse_database: format!("herald_{run_id}"),
    })
}

/// A fresh master key for sealing secrets at rest, as `HERALD_SECRETS_KEY` takes it.
pub fn test_secrets_key() -> String {
    herald_rules::SecretsKeyring::generate_key("test")
}

/// An HTTP client; reqwest is built without a bundled crypto provider, so one is installed.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

pub fn replace_database(url: &str, database: &str) -> String {
    match url.rfind('/') {
        Some(index) if index > "postgres://".len() => format!("{}/{database}", &url[..index]),
        _ => format!("{url}/{database}"),
    }
}

pub async fn create_database(server_url: &str, database: &str) -> Result<()> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(server_url)
        .await
        .with_context(|| "connect to Postgres to create the test database")?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut connection)
        .await?;
    Ok(())
}

/// How many of `event_ids` the Postgres read model shows delivered (`None` if it cannot say).
pub async fn events_delivered(pool: &sqlx::PgPool, event_ids: &[String]) -> Option<usize> {
    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE status = 'delivered' AND event_id::text = ANY($1)",
    )
    .bind(event_ids)
    .fetch_one(pool)
    .await
    .ok()?;
    usize::try_from(delivered).ok()
}

/// Names a test's databases and namespaces. Sub-second clock readings XORed with the pid were
/// not enough: two tests of one binary, started together, once drew the same name
/// (`CREATE DATABASE` failed with a duplicate key).
pub fn rand_u32() -> u32 {
    rand::random()
}

/// Polls `probe` until it returns `Some`, or fails after `deadline`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// An HTTP client for one test, speaking to the shared Herald.
pub struct Api {
    pub http: reqwest::Client,
    pub herald: TestHerald,
}

/// See [`Api::busy_backlogs`].
#[derive(Debug)]
pub struct BusyBacklogs {
    pub waiting: u64,
    pub in_backlogs: usize,
    pub consumers: Vec<String>,
}

#[derive(Clone)]
pub struct Tenant {
    pub tenant_id: String,
    pub api_key: String,
}

pub struct Endpoint {
    pub endpoint_id: String,
    pub secret: String,
    pub body: Value,
}

impl Api {
    /// Speaks to a Herald other than the shared one (e.g. one run as a child process).
    pub fn with(herald: TestHerald) -> Self {
        Self {
            http: http_client(),
            herald,
        }
    }

    pub fn new() -> Self {
        Self {
            http: http_client(),
            herald: herald().clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.herald.base_url)
    }

    pub async fn create_tenant(&self, name: &str) -> Result<Tenant> {
        let response = self
            .http
            .post(self.url("/admin/v1/tenants"))
            .bearer_auth(&self.herald.admin_token)
            .json(&json!({ "name": name }))
            .send()
            .await?;
        if response.status() != 201 {
            bail!(
                "tenant not created: {} {}",
                response.status(),
                response.text().await?
            );
        }
        let body: Value = response.json().await?;
        Ok(Tenant {
            tenant_id: body["tenant_id"].as_str().context("tenant_id")?.to_owned(),
            api_key: body["api_key"].as_str().context("api_key")?.to_owned(),
        })
    }

    pub async fn create_endpoint(&self, tenant: &Tenant, body: Value) -> Result<Endpoint> {
        let response = self
            .http
            .post(self.url("/v1/webhook_endpoints"))
            .bearer_auth(&tenant.api_key)
            .json(&body)
            .send()
            .await?;
        if response.status() != 201 {
            bail!(
                "endpoint not created: {} {}",
                response.status(),
                response.text().await?
            );
        }
        let body: Value = response.json().await?;
        Ok(Endpoint {
            endpoint_id: body["endpoint_id"]
                .as_str()
                .context("endpoint_id")?
                .to_owned(),
            secret: body["secret"].as_str().context("secret")?.to_owned(),
            body,
        })
    }

    /// POSTs an event and returns (status, body).
    pub async fn post_event(&self, tenant: &Tenant, body: Value) -> Result<(u16, Value)> {
        self.post(tenant, "/v1/events", body).await
    }

    /// POSTs `body` to `path` with the tenant's API key and returns (status, body).
    pub async fn post(&self, tenant: &Tenant, path: &str, body: Value) -> Result<(u16, Value)> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(&tenant.api_key)
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn send_event(&self, tenant: &Tenant, body: Value) -> Result<String> {
        let (status, body) = self.post_event(tenant, body).await?;
        if status != 202 {
            bail!("event not accepted: {status} {body}");
        }
        Ok(body["event_id"].as_str().context("event_id")?.to_owned())
    }

    pub async fn get(&self, tenant: &Tenant, path: &str) -> Result<(u16, Value)> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&tenant.api_key)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// Sends `method path` with bearer `token` and an optional JSON body; returns the status,
    /// the `content-type` and the JSON body (`Null` when there is none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, String, Value)> {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((
            status,
            content_type,
            response.json().await.unwrap_or(Value::Null),
        ))
    }

    /// PATCHes `body` to `path` with the tenant's API key; returns (status, body).
    pub async fn patch(&self, tenant: &Tenant, path: &str, body: Value) -> Result<(u16, Value)> {
        let (status, _, body) = self
            .call(reqwest::Method::PATCH, path, &tenant.api_key, Some(body))
            .await?;
        Ok((status, body))
    }

    /// DELETEs `path` with the tenant's API key; returns (status, body).
    pub async fn delete(&self, tenant: &Tenant, path: &str) -> Result<(u16, Value)> {
        let (status, _, body) = self
            .call(reqwest::Method::DELETE, path, &tenant.api_key, None)
            .await?;
        Ok((status, body))
    }

    /// Waits until the event's status is `status`, returning the event.
    pub async fn wait_for_event_status(
        &self,
        tenant: &Tenant,
        event_id: &str,
        status: &str,
    ) -> Result<Value> {
        let path = format!("/v1/events/{event_id}");
        wait_until(
            Duration::from_secs(20),
            &format!("event {event_id} to be {status}"),
            || async {
                let (code, body) = self.get(tenant, &path).await.ok()?;
                (code == 200 && body["status"] == status).then_some(body)
            },
        )
        .await
    }

    /// Runs a ClickHouse query over HTTP and returns its TabSeparated output.
    pub async fn clickhouse(&self, sql: &str) -> Result<String> {
        let response = self
            .http
            .post(format!(
                "{}/?database={}",
                self.herald.clickhouse_url, self.herald.clickhouse_database
            ))
            .body(sql.to_owned())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("ClickHouse said {status}: {text}");
        }
        Ok(text.trim().to_owned())
    }

    /// Accepted events the delivery service has not finished with yet (first attempts made or
    /// parked), from the delivery consumer's state in JetStream.
    pub async fn first_attempts_outstanding(&self) -> Result<u64> {
        let client = async_nats::connect(&self.herald.nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let namespace = herald_schemas::Namespace::new(&self.herald.namespace)?;
        let stream = jetstream.get_stream(namespace.log_stream()).await?;
        let info = stream.consumer_info("delivery").await?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// What the retry stream holds: messages in all, those in busy endpoints' backlogs, and
    /// the consumers that drain those backlogs (by name).
    pub async fn busy_backlogs(&self) -> Result<BusyBacklogs> {
        use futures::TryStreamExt;
        let client = async_nats::connect(&self.herald.nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let namespace = self.namespace()?;
        let mut stream = jetstream.get_stream(namespace.retry_stream()).await?;
        let waiting = stream.info().await?.state.messages;
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(namespace.busy_backlogs_filter())
            .await?
            .try_collect()
            .await?;
        let consumers: Vec<String> = stream.consumer_names().try_collect().await?;
        Ok(BusyBacklogs {
            waiting,
            in_backlogs: counts.iter().map(|(_, count)| count).sum(),
            consumers: consumers
                .into_iter()
                .filter(|name| name.starts_with("busy_"))
                .collect(),
        })
    }

    /// This Herald's log namespace (stream and subject names).
    pub fn namespace(&self) -> Result<herald_schemas::Namespace> {
        Ok(herald_schemas::Namespace::new(&self.herald.namespace)?)
    }

    /// How many messages the log holds on `subject`, and the last one, decoded.
    pub async fn log_messages_on(&self, subject: &str) -> Result<(usize, Option<Value>)> {
        use futures::TryStreamExt;
        let client = async_nats::connect(&self.herald.nats_url).await?;
        let jetstream = async_nats::jetstream::new(client);
        let stream = jetstream.get_stream(self.namespace()?.log_stream()).await?;
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(subject)
            .await?
            .try_collect()
            .await?;
        let count = counts.iter().map(|(_, count)| count).sum();
        let last = match count {
            0 => None,
            _ => {
                let message = stream.get_last_raw_message_by_subject(subject).await?;
                Some(serde_json::from_slice(&message.payload)?)
            }
        };
        Ok((count, last))
    }

    pub async fn postgres(&self) -> Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.herald.database_url)
            .await?)
    }
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}
