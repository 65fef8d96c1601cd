//! Herald's delivery service: takes accepted events from the log, makes signed HTTP attempts
//! to every subscribed endpoint, records each attempt in the log and schedules retries
//! through it.

pub mod attempt;
pub mod attempt_record;
pub mod busy_backlogs;
pub mod circuit_breaker;
pub mod classify;
pub mod config;
pub mod endpoint_breakers;
pub mod endpoint_concurrency;
pub mod endpoint_registry;
pub mod first_attempts;
pub mod handled_events;
pub mod http_sender;
pub mod log_position;
pub mod log_replays;
pub mod ordered_lanes;
pub mod overdue;
pub mod pre_attempt;
pub mod replays;
pub mod retry_backlog;
pub mod retry_budget;
pub mod retry_policy;
pub mod retry_queue;
pub mod retry_worker;
pub mod stopping;
pub mod unordered;

pub use config::DeliveryConfig;
// Shared with the other services through `herald-rules`; re-exported under the paths the
// delivery modules use.
pub use herald_rules::{rate_limit, signature, target_guard, SigningSecret, TargetGuard};

use crate::attempt::AttemptRunner;
use crate::endpoint_registry::EndpointRegistry;
use crate::http_sender::{HttpSender, Timeouts};
use crate::ordered_lanes::OrderedLanes;
use crate::retry_queue::{RetryScheduler, TIERS};
use crate::retry_worker::RetryWorker;
use crate::unordered::UnorderedDeliveries;
use async_nats::jetstream;
use herald_log::outbox::Outbox;
use herald_log::LogPublisher;
use herald_schemas::LogMessage;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("log unavailable: stream {name}: {source}")]
    Stream {
        name: String,
        source: jetstream::context::GetStreamError,
    },
    #[error(transparent)]
    Consumer(#[from] herald_log::LogError),
}

/// Runs the delivery service until `shutdown` is cancelled, then stops taking work, gives
/// in-flight attempts `shutdown_grace_ms` to finish and hands the rest back to the log.
/// `started` is called once every consumer is open and every loop runs.
pub async fn run(
    config: DeliveryConfig,
    publisher: LogPublisher,
    pool: PgPool,
    vault: Arc<herald_store::secrets_vault::SecretsVault>,
    shutdown: CancellationToken,
    started: impl FnOnce() + Send,
) -> Result<(), DeliveryError> {
    let guard = TargetGuard::from_list(&config.allowed_target_cidrs)
        .map_err(|error| DeliveryError::Config(error.to_string()))?;
    // Tiered: connect ≤ first byte ≤ total, whatever the configuration says.
    let total = Duration::from_millis(config.request_timeout_ms.max(1));
    let first_byte = Duration::from_millis(config.first_byte_timeout_ms).min(total);
    let timeouts = Timeouts {
        connect: Duration::from_millis(config.connect_timeout_ms).min(first_byte),
        first_byte,
        total,
    };
    let sender = HttpSender::new(guard, &timeouts, config.max_in_flight_per_endpoint)
        .map_err(|error| DeliveryError::Config(error.to_string()))?;
    let namespace = publisher.namespace().clone();
    let jetstream = publisher.jetstream().clone();
    // Opened once the log answers: a server restarting while this service starts must not
    // stop it (`herald_log::when_available`).
    let Some(log_stream) = get_stream(&jetstream, &namespace.log_stream(), &shutdown).await? else {
        return Ok(());
    };
    let Some(retry_stream) = get_stream(&jetstream, &namespace.retry_stream(), &shutdown).await?
    else {
        return Ok(());
    };
    let ack_wait = Duration::from_millis(config.ack_wait_ms);

    let retries = RetryScheduler::new(publisher.clone());
    let runner = Arc::new(AttemptRunner::new(
        &config,
        sender,
        EndpointRegistry::new(
            pool.clone(),
            vault,
            Duration::from_millis(config.endpoint_cache_ttl_ms),
        ),
        publisher.clone(),
        Outbox::new(pool.clone(), publisher),
    ));
    let (backlogs_drained, backlogs_to_drain) = busy_backlogs::BacklogsDrained::new();
    let unordered = Arc::new(UnorderedDeliveries::new(
        runner.clone(),
        retries.clone(),
        backlogs_drained.clone(),
    ));
    // Consumers of the log stream that must be created start after the read model's position
    // (`log_position`), never at the beginning of a log that already has a history.
    let checkpoint = namespace.postgres_checkpoint();
    let start = {
        let (pool, checkpoint) = (pool.clone(), checkpoint.clone());
        move || {
            let (pool, checkpoint) = (pool.clone(), checkpoint.clone());
            async move { log_position::after_read_model(&pool, &checkpoint).await }
        }
    };
    let events_spec = first_attempts::consumer(
        namespace.events_filter(),
        ack_wait,
        (config.max_in_flight * 4) as i64,
    );
    let replays_spec = replays::consumer(namespace.replays_filter());
    let log_replays_spec = log_replays::consumer(namespace.replays_filter(), ack_wait);
    let Some(events) = events_spec
        .open_when_available(&log_stream, start().await, &shutdown)
        .await?
    else {
        return Ok(());
    };
    let Some(replay_requests) = replays_spec
        .open_when_available(&log_stream, start().await, &shutdown)
        .await?
    else {
        return Ok(());
    };
    let Some(replays_started) = log_replays_spec
        .open_when_available(&log_stream, start().await, &shutdown)
        .await?
    else {
        return Ok(());
    };
    let log_replays = Arc::new(log_replays::LogReplays {
        pool: pool.clone(),
        publisher: runner.publisher().clone(),
        log_stream: log_stream.clone(),
        ack_wait,
    });
    let lanes = Arc::new(OrderedLanes::new(
        runner.clone(),
        pool.clone(),
        log_stream.clone(),
        namespace.clone(),
        total,
    ));
    let overdue = overdue::OverdueDeliveries {
        pool: pool.clone(),
        retries: retries.clone(),
        log_stream: log_stream.clone(),
        checkpoint,
        overdue_after: config.overdue_after(),
    };
    let retry_worker = Arc::new(RetryWorker {
        deliveries: unordered.clone(),
        log_stream: log_stream.clone(),
        retry_stream: retry_stream.clone(),
        ack_wait,
    });
    // Every consumer is opened before any loop starts, so that a shutdown meanwhile has
    // nothing to wait for.
    let mut tier_consumers = Vec::with_capacity(TIERS.len());
    for tier in TIERS {
        let Some(consumer) = retry_worker.consumer(tier, &shutdown).await? else {
            return Ok(());
        };
        tier_consumers.push((tier, consumer));
    }

    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    let mut loops = Vec::new();
    loops.push(tokio::spawn(first_attempts::run(
        unordered,
        events_spec,
        log_stream.clone(),
        events,
        start.clone(),
        tracker.clone(),
        shutdown.clone(),
        hard_stop.clone(),
    )));
    for (tier, consumer) in tier_consumers {
        loops.push(tokio::spawn(retry_worker.clone().run_tier(
            tier,
            consumer,
            tracker.clone(),
            shutdown.clone(),
            hard_stop.clone(),
        )));
    }
    let busy_backlogs = Arc::new(busy_backlogs::BusyBacklogs {
        worker: retry_worker.clone(),
        drained: backlogs_drained,
    });
    loops.push(tokio::spawn(busy_backlogs.run(
        backlogs_to_drain,
        tracker.clone(),
        shutdown.clone(),
        hard_stop.clone(),
    )));
    loops.push(tokio::spawn(overdue.run(shutdown.clone())));
    loops.push(tokio::spawn(retry_backlog::sample(
        retry_stream,
        shutdown.clone(),
    )));
    loops.push(tokio::spawn(log_replays.run(
        log_replays_spec,
        replays_started,
        start.clone(),
        shutdown.clone(),
    )));
    loops.push(tokio::spawn(replays::run(
        retries,
        replays_spec,
        log_stream,
        replay_requests,
        start,
        shutdown.clone(),
    )));
    // In the tracker: on shutdown, lanes finish their attempt within the grace period.
    tracker.spawn(lanes.clone().run(shutdown.clone(), hard_stop.clone()));
    loops.push(tokio::spawn(follow_config_changes(
        runner.clone(),
        lanes,
        jetstream.client(),
        namespace.config_filter(),
        shutdown.clone(),
    )));
    tracing::info!("delivery service running");
    started();
    shutdown.cancelled().await;
    for handle in loops {
        let _ = handle.await;
    }
    tracker.close();
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("in-flight attempts handed back to the log");
        hard_stop.cancel();
        tracker.wait().await;
    }
    tracing::info!("delivery service stopped");
    Ok(())
}

/// Forgets cached endpoints as soon as the log says they changed (rotated secret, disabled),
/// so changes apply within milliseconds rather than after the cache TTL, and shares circuit
/// breaker changes between workers.
async fn follow_config_changes(
    runner: Arc<AttemptRunner>,
    lanes: Arc<OrderedLanes>,
    nats: async_nats::Client,
    subject: String,
    shutdown: CancellationToken,
) {
    herald_log::follow(nats, subject, shutdown, |message| match &message {
        LogMessage::EndpointCreated(created) if created.endpoint.ordered => {
            lanes.endpoint_created()
        }
        _ => runner.follow(&message),
    })
    .await;
}

async fn get_stream(
    jetstream: &jetstream::Context,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Option<jetstream::stream::Stream>, DeliveryError> {
    herald_log::when_available::stream(jetstream, name, shutdown)
        .await
        .map_err(|source| DeliveryError::Stream {
            name: name.to_owned(),
            source,
        })
}
