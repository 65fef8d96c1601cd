//! A clustered log: `herald all` on a three-server JetStream cluster with R3 streams keeps
//! accepting and delivering events when the server leading its log stream is SIGKILLed
//! under load, and the killed server rejoins when it comes back.
//!
//! It lives in the herald package (not in `tests/`) because `CARGO_BIN_EXE_herald` makes
//! cargo build the current binary before the test runs; a path into `target/` could run a
//! stale binary, or none.

use async_nats::jetstream;
use herald_tests::nats_cluster::NatsCluster;
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{events_delivered, wait_until, Api, Tenant};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const REPLICAS: usize = 3;
/// Events accepted before the kill, and accepted events first sent after it.
const BEFORE_KILL: usize = 150;
const AFTER_KILL: usize = 150;
/// Bounds on the load whatever happens.
const MAX_EVENTS: usize = 2_000;
const EVENT_EVERY: Duration = Duration::from_millis(10);
const ONE_EVENT_WITHIN: Duration = Duration::from_secs(60);
/// The delivery consumer's ack wait (`HERALD_ACK_WAIT_MS`, default): a message whose
/// acknowledgement died with the server is handed out again only after it.
fn ack_wait() -> Duration {
    Duration::from_millis(herald_delivery::config::DeliveryConfig::default().ack_wait_ms)
}
/// Delivery must resume well before the ack wait: resuming only when it has passed means the
/// messages handed out after the election reached no reader (a regression seen once: 60 s).
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// One event the client got a 202 for.
#[derive(Clone, Debug)]
struct Accepted {
    event_id: String,
    /// When the client first sent it, when the try that got the 202 started and ended.
    first_sent_at: Instant,
    accepted_try_at: Instant,
    accepted_at: Instant,
}

#[derive(Default)]
struct Load {
    sent: usize,
    accepted: Vec<Accepted>,
    /// Answers by status (`"transport error"` when there was none).
    answers: BTreeMap<String, usize>,
}

impl Load {
    fn accepted_first_sent_after(&self, instant: Instant) -> usize {
        self.accepted
            .iter()
            .filter(|event| event.first_sent_at > instant)
            .count()
    }
}

/// What a client that must not lose an event does: repeats the request with the same
/// idempotency key until it gets a 202 (a 503 while the log elects a leader is expected).
async fn send_until_accepted(
    api: &Api,
    tenant: &Tenant,
    index: usize,
    load: &Mutex<Load>,
) -> anyhow::Result<Accepted> {
    let key = format!("clustered-{index}");
    let body = json!({ "type": "t", "payload": { "index": index }, "idempotency_key": key });
    let first_sent_at = Instant::now();
    loop {
        let try_at = Instant::now();
        let answer = api.post_event(tenant, body.clone()).await;
        let status = match &answer {
            Ok((status, _)) => status.to_string(),
            Err(_) => "transport error".to_owned(),
        };
        *load
            .lock()
            .expect("lock")
            .answers
            .entry(status)
            .or_default() += 1;
        match answer {
            Ok((202, body)) => {
                let event_id = body["event_id"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("202 without event_id: {body}"))?;
                return Ok(Accepted {
                    event_id: event_id.to_owned(),
                    first_sent_at,
                    accepted_try_at: try_at,
                    accepted_at: Instant::now(),
                });
            }
            Ok((status, body)) if status < 500 => {
                anyhow::bail!("event {index} refused: {status} {body}")
            }
            Ok(_) | Err(_) => {}
        }
        anyhow::ensure!(
            first_sent_at.elapsed() < ONE_EVENT_WITHIN,
            "event {index} not accepted within {ONE_EVENT_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends events one after another until `stop` (or `MAX_EVENTS`).
async fn send_load(
    api: Api,
    tenant: Tenant,
    load: Arc<Mutex<Load>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    for index in 0..MAX_EVENTS {
        if stop.is_cancelled() {
            break;
        }
        load.lock().expect("lock").sent += 1;
        let accepted = send_until_accepted(&api, &tenant, index, &load).await?;
        load.lock().expect("lock").accepted.push(accepted);
        tokio::time::sleep(EVENT_EVERY).await;
    }
    Ok(())
}

async fn stream_info(
    jetstream: &jetstream::Context,
    name: &str,
) -> Option<jetstream::stream::Info> {
    let mut stream = jetstream.get_stream(name).await.ok()?;
    stream.info().await.ok().cloned()
}

/// The servers that hold a stream or consumer (leader first), from its cluster info.
fn holders(cluster: Option<&jetstream::stream::ClusterInfo>) -> Vec<String> {
    let Some(cluster) = cluster else {
        return Vec::new();
    };
    cluster
        .leader
        .iter()
        .cloned()
        .chain(cluster.replicas.iter().map(|peer| peer.name.clone()))
        .collect()
}

/// The durable consumers of a stream and the servers that hold each.
async fn durable_consumers(
    jetstream: &jetstream::Context,
    stream: &str,
) -> Option<Vec<(String, Vec<String>)>> {
    use futures::TryStreamExt;
    let stream = jetstream.get_stream(stream).await.ok()?;
    let consumers: Vec<_> = stream.consumers().try_collect().await.ok()?;
    Some(
        consumers
            .into_iter()
            // The projectors' ordered readers are ephemeral and recreated by the client.
            .filter(|consumer| consumer.config.durable_name.is_some())
            .map(|consumer| (consumer.name, holders(consumer.cluster.as_ref())))
            .collect(),
    )
}

/// Both streams and every durable consumer on them are kept by `REPLICAS` servers: the
/// consumers inherit the stream's replica count.
async fn assert_replicated(
    jetstream: &jetstream::Context,
    namespace: &herald_schemas::Namespace,
) -> anyhow::Result<()> {
    for name in [namespace.log_stream(), namespace.retry_stream()] {
        let info = wait_until(Duration::from_secs(10), "stream info", || {
            stream_info(jetstream, &name)
        })
        .await?;
        assert_eq!(info.config.num_replicas, REPLICAS, "stream {name}");
        assert_eq!(
            holders(info.cluster.as_ref()).len(),
            REPLICAS,
            "stream {name}"
        );
    }
    // Delivery creates its consumers once the HTTP server is already up.
    let delivery = herald_delivery::first_attempts::CONSUMER_NAME;
    let (on_log, on_retries) = wait_until(
        Duration::from_secs(30),
        "the delivery consumers",
        || async {
            let on_log = durable_consumers(jetstream, &namespace.log_stream()).await?;
            let on_retries = durable_consumers(jetstream, &namespace.retry_stream()).await?;
            let ready = on_log.iter().any(|(name, _)| name == delivery) && !on_retries.is_empty();
            ready.then_some((on_log, on_retries))
        },
    )
    .await?;
    for (consumer, servers) in on_log.iter().chain(&on_retries) {
        assert_eq!(
            servers.len(),
            REPLICAS,
            "consumer {consumer} is kept by {servers:?}"
        );
    }
    println!(
        "  durable consumers, all R{REPLICAS}: {:?}",
        on_log
            .iter()
            .chain(&on_retries)
            .map(|(consumer, _)| consumer.as_str())
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// The server leading a stream, or one of its consumers.
async fn leader_of(
    jetstream: &jetstream::Context,
    stream: &str,
    consumer: Option<&str>,
) -> Option<String> {
    let cluster = match consumer {
        None => stream_info(jetstream, stream).await?.cluster,
        Some(consumer) => {
            let stream = jetstream.get_stream(stream).await.ok()?;
            stream.consumer_info(consumer).await.ok()?.cluster
        }
    };
    cluster?.leader
}

/// Asks the leader of a stream (or consumer) to step down until `target` leads it: the kill
/// then takes away the stream leader, the consumer leader and Herald's server at once.
async fn move_leader_to(
    jetstream: &jetstream::Context,
    stream: &str,
    consumer: Option<&str>,
    target: &str,
) -> anyhow::Result<()> {
    let what = consumer.unwrap_or(stream);
    let request = match consumer {
        None => format!("STREAM.LEADER.STEPDOWN.{stream}"),
        Some(consumer) => format!("CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"),
    };
    for _ in 0..12 {
        let leader = wait_until(Duration::from_secs(20), "a leader", || {
            leader_of(jetstream, stream, consumer)
        })
        .await?;
        if leader == target {
            return Ok(());
        }
        let answer: serde_json::Value = jetstream.request(request.clone(), &json!({})).await?;
        anyhow::ensure!(answer["success"] == true, "{what} step-down: {answer}");
        wait_until(Duration::from_secs(20), "a new leader", || async {
            let now = leader_of(jetstream, stream, consumer).await?;
            (now != leader).then_some(())
        })
        .await?;
    }
    anyhow::bail!("{what} not led by {target} after 12 step-downs")
}

/// Which server each connection named `herald` is attached to, from the monitoring endpoints.
async fn herald_connections(cluster: &NatsCluster, api: &Api) -> Vec<String> {
    let mut servers = Vec::new();
    for node in cluster.nodes.iter().filter(|node| node.is_running()) {
        let url = format!("http://127.0.0.1:{}/connz", node.monitor_port);
        let Ok(response) = api.http.get(url).send().await else {
            continue;
        };
        let Ok(connections) = response.json::<serde_json::Value>().await else {
            continue;
        };
        let count = connections["connections"]
            .as_array()
            .map(|all| all.iter().filter(|c| c["name"] == "herald").count())
            .unwrap_or(0);
        servers.extend(std::iter::repeat_n(node.name.clone(), count));
    }
    servers
}

/// Why the read model is not complete, for the failure message: how far the projector got,
/// what it shows of the events it lacks, what the receiver got of them, and what the delivery
/// consumer still holds.
async fn read_model_report(
    pool: &sqlx::PgPool,
    ids: &[String],
    jetstream: &jetstream::Context,
    log_stream: &str,
    receiver: &Receiver,
) -> String {
    let mut report = String::from("  read model incomplete:\n");
    let last_sequence = stream_info(jetstream, log_stream)
        .await
        .map(|info| info.state.last_sequence);
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT projector, stream_sequence FROM projector_checkpoints")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    report +=
        &format!("    log ends at {last_sequence:?}; projector checkpoints {checkpoints:?}\n");
    /// An event's id, its status and its delivery's, and the delivery's attempts.
    type Lacking = (String, Option<String>, Option<String>, Option<i32>);
    let lacking: Vec<Lacking> = sqlx::query_as(
        "SELECT wanted.id, e.status, d.status, d.attempt_count \
         FROM unnest($1::text[]) AS wanted(id) \
         LEFT JOIN events e ON e.event_id::text = wanted.id \
         LEFT JOIN deliveries d ON d.event_id = e.event_id \
         WHERE e.status IS DISTINCT FROM 'delivered'",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let requests = receiver.requests();
    for (id, event, delivery, attempts) in lacking.iter().take(10) {
        let received = requests
            .iter()
            .filter(|request| request.header("webhook-id") == id)
            .count();
        report += &format!(
            "    {id}: event {event:?}, delivery {delivery:?} with {attempts:?} attempts; \
             received {received} times\n"
        );
    }
    report += &format!("    {} events not shown delivered\n", lacking.len());
    let consumer = async {
        let stream = jetstream.get_stream(log_stream).await.ok()?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(herald_delivery::first_attempts::CONSUMER_NAME)
            .await
            .ok()?;
        consumer.info().await.ok().cloned()
    };
    if let Some(info) = consumer.await {
        report += &format!(
            "    delivery consumer: {} pending, {} unacknowledged, {} redelivered, {} pulls \
             waiting, acknowledged through {}\n",
            info.num_pending,
            info.num_ack_pending,
            info.num_redelivered,
            info.num_waiting,
            info.ack_floor.stream_sequence
        );
    }
    report
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

#[tokio::test]
async fn killing_the_log_stream_leader_loses_no_accepted_event() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(REPLICAS).await?;
    let urls = cluster.client_urls();
    let replicas = REPLICAS.to_string();
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_NATS_URL", urls.as_str()),
            ("HERALD_LOG_REPLICAS", replicas.as_str()),
            // The 503s of the election are expected: keep their two log lines each out of
            // the output, and every other warning in it.
            (
                "RUST_LOG",
                "warn,herald_command::events=error,herald::app=error",
            ),
        ],
    )
    .await?;
    herald.herald.nats_url = urls.clone();
    let api = Api::with(herald.herald.clone());
    let namespace = api.namespace()?;
    let client = async_nats::ConnectOptions::new()
        .name("clustered-log-test")
        .connect(cluster.urls())
        .await?;
    // Short request timeouts, so that probes do not hide how fast the cluster recovers.
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client);
    let log_stream = namespace.log_stream();
    let delivery = herald_delivery::first_attempts::CONSUMER_NAME;
    println!("clustered log: {REPLICAS} nats-servers, R{REPLICAS} streams");
    assert_replicated(&jetstream, &namespace).await?;

    let tenant = api.create_tenant("clustered").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    // The hardest case: the server that dies is also the one Herald is connected to and
    // leads the consumer that feeds delivery.
    let connected_to = herald_connections(&cluster, &api).await;
    let target = cluster
        .nodes
        .iter()
        .map(|node| &node.name)
        .max_by_key(|name| connected_to.iter().filter(|server| server == name).count())
        .filter(|_| !connected_to.is_empty())
        .ok_or_else(|| anyhow::anyhow!("Herald has no NATS connection"))?
        .clone();
    let target = &target;
    move_leader_to(&jetstream, &log_stream, None, target).await?;
    move_leader_to(&jetstream, &log_stream, Some(delivery), target).await?;

    let load = Arc::new(Mutex::new(Load::default()));
    let stop = CancellationToken::new();
    let load_started = Instant::now();
    let sender = tokio::spawn(send_load(
        Api::with(herald.herald.clone()),
        Tenant {
            tenant_id: tenant.tenant_id.clone(),
            api_key: tenant.api_key.clone(),
        },
        load.clone(),
        stop.clone(),
    ));
    let accepted_count = || load.lock().expect("lock").accepted.len();
    wait_until(
        Duration::from_secs(60),
        "events accepted before the kill",
        || async { (accepted_count() >= BEFORE_KILL).then_some(()) },
    )
    .await?;

    let info = stream_info(&jetstream, &log_stream)
        .await
        .ok_or_else(|| anyhow::anyhow!("no stream info"))?;
    let leader = info
        .cluster
        .and_then(|cluster| cluster.leader)
        .ok_or_else(|| anyhow::anyhow!("the log stream has no leader"))?;
    let leader_index = cluster
        .index_of(&leader)
        .ok_or_else(|| anyhow::anyhow!("unknown leader {leader}"))?;
    let mut held = vec!["log stream leader"];
    if leader_of(&jetstream, &log_stream, Some(delivery))
        .await
        .as_ref()
        == Some(&leader)
    {
        held.push("delivery consumer leader");
    }
    let connected_to = herald_connections(&cluster, &api).await;
    if connected_to.contains(&leader) {
        held.push("Herald's connection");
    }
    cluster.kill(leader_index)?;
    let killed_at = Instant::now();
    let accepted_before_kill = accepted_count();

    let new_leader = wait_until(
        Duration::from_secs(30),
        "a new leader of the log stream",
        || async {
            let info = stream_info(&jetstream, &log_stream).await?;
            let leader_now = info.cluster?.leader?;
            (leader_now != leader).then_some((leader_now, killed_at.elapsed()))
        },
    )
    .await?;
    let after_kill = wait_until(
        Duration::from_secs(120),
        "events accepted after the kill",
        || async {
            let accepted_after = load
                .lock()
                .expect("lock")
                .accepted_first_sent_after(killed_at);
            let failed = sender.is_finished();
            (accepted_after >= AFTER_KILL || failed).then_some(accepted_after)
        },
    )
    .await?;
    stop.cancel();
    sender.await??;
    assert!(after_kill >= AFTER_KILL, "the load stopped early");

    let (accepted, sent, answers) = {
        let load = load.lock().expect("lock");
        (load.accepted.clone(), load.sent, load.answers.clone())
    };
    let accepted_ids: HashSet<String> = accepted
        .iter()
        .map(|event| event.event_id.clone())
        .collect();
    let all_delivered = wait_until(
        Duration::from_secs(90),
        "every accepted event delivered",
        || async {
            let received = receiver.distinct_ids();
            accepted_ids.is_subset(&received).then_some(())
        },
    )
    .await;
    let received = receiver.distinct_ids();
    let lost: Vec<&Accepted> = accepted
        .iter()
        .filter(|event| !received.contains(&event.event_id))
        .collect();

    // Recovery times, from the client's and the receiver's points of view.
    let next_accepted = accepted
        .iter()
        .filter(|event| event.accepted_try_at > killed_at)
        .map(|event| event.accepted_at - killed_at)
        .min();
    let sent_after_kill: HashSet<&str> = accepted
        .iter()
        .filter(|event| event.first_sent_at > killed_at)
        .map(|event| event.event_id.as_str())
        .collect();
    let requests = receiver.requests();
    let first_delivery_after_kill = requests
        .iter()
        .filter(|request| request.received_at > killed_at)
        .map(|request| request.received_at - killed_at)
        .min();
    let first_delivery_of_new_event = requests
        .iter()
        .filter(|request| sent_after_kill.contains(request.header("webhook-id")))
        .map(|request| request.received_at - killed_at)
        .min();
    let mut deliveries_per_id: HashMap<&str, usize> = HashMap::new();
    for request in &requests {
        *deliveries_per_id
            .entry(request.header("webhook-id"))
            .or_default() += 1;
    }
    let repeated = deliveries_per_id
        .values()
        .filter(|&&count| count > 1)
        .count();
    let unanswered = deliveries_per_id
        .keys()
        .filter(|id| !accepted_ids.contains(**id))
        .count();
    let show = |duration: Option<Duration>| duration.map_or("never".to_owned(), seconds);

    println!("  events sent: {sent}, answered 202: {}", accepted.len());
    println!("  answers by status: {answers:?}");
    println!(
        "  SIGKILLed {leader} ({}) {} into the load, after {accepted_before_kill} 202s",
        held.join(", "),
        seconds(killed_at - load_started)
    );
    println!(
        "  new log stream leader: {} after {}",
        new_leader.0,
        seconds(new_leader.1)
    );
    println!(
        "  next 202 (of a try started after the kill): {}",
        show(next_accepted)
    );
    println!("  202s for events first sent after the kill: {after_kill}");
    println!(
        "  first delivery after the kill: {}; first delivery of an event sent after it: {}",
        show(first_delivery_after_kill),
        show(first_delivery_of_new_event)
    );
    println!(
        "  deliveries: {} requests, {} distinct webhook-ids, {repeated} delivered more than once, \
         {unanswered} never answered 202",
        requests.len(),
        deliveries_per_id.len()
    );
    println!("  lost (202 but never delivered): {}", lost.len());

    assert!(
        lost.is_empty(),
        "{} accepted events never delivered, e.g. {:?}\n{}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        cluster.log_tails()
    );
    all_delivered?;
    let resumed = first_delivery_of_new_event
        .ok_or_else(|| anyhow::anyhow!("no event sent after the kill was delivered"))?;
    assert!(
        resumed < RESUME_WITHIN,
        "delivery of new events resumed {} after the kill, not within {RESUME_WITHIN:?}",
        seconds(resumed)
    );

    // The projector's readers of the log survived the kill too: the read model knows. An
    // attempt record that could not be appended is appended again (ADR 0027), but an event
    // whose log message was lost on its way to Herald is handed out again only after the ack
    // wait, and only its new attempt completes it there.
    let pool = api.postgres().await?;
    let ids: Vec<String> = accepted_ids.iter().cloned().collect();
    let projected = wait_until(
        (ack_wait() + Duration::from_secs(30))
            .saturating_sub(killed_at.elapsed())
            .max(Duration::from_secs(10)),
        "the read model to show every accepted event delivered",
        || async {
            (events_delivered(&pool, &ids).await? == ids.len()).then_some(killed_at.elapsed())
        },
    )
    .await;
    if projected.is_err() {
        println!(
            "{}",
            read_model_report(&pool, &ids, &jetstream, &log_stream, &receiver).await
        );
    }
    let projected = projected?;
    println!(
        "  read model: all {} events delivered, {} after the kill",
        ids.len(),
        seconds(projected)
    );

    // The killed server comes back and catches up with the log stream.
    cluster.restart(leader_index)?;
    let restarted_at = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the restarted server to be current on the log stream",
        || async {
            let info = stream_info(&jetstream, &log_stream).await?;
            let cluster_info = info.cluster?;
            // Seen since it restarted, and caught up.
            let back = cluster_info.leader.as_deref() == Some(leader.as_str())
                || cluster_info.replicas.iter().any(|peer| {
                    peer.name == leader
                        && peer.current
                        && !peer.offline
                        && peer.active < restarted_at.elapsed()
                });
            back.then_some(())
        },
    )
    .await?;
    println!(
        "  {leader} restarted and current on the log stream after {}",
        seconds(restarted_at.elapsed())
    );
    Ok(())
}
