//! What a service opens when it starts — its stream, its durable consumers — while the log's
//! only server is down: `herald_log::when_available` waits for the server instead of failing,
//! and gets them once it is back. Before, the first timeout stopped the service, and `herald
//! all` with it (a retry tier's consumer, in CI's run of `herald/tests/log_outage.rs`).

use async_nats::jetstream::{self, consumer::DeliverPolicy, stream};
use herald_log::{when_available, DurableConsumer, LogError};
use herald_tests::nats_cluster::NatsCluster;
use herald_tests::wait_until;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "UNAVAILABLE_LOG";
/// Short, so that a request made while the server is down fails soon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_stream_and_consumer_opened_while_the_log_is_down_are_opened_once_it_is_back(
) -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(1).await?;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.client_urls())
        .await?;
    let mut jetstream = jetstream::new(nats.clone());
    jetstream.set_timeout(REQUEST_TIMEOUT);
    let log = jetstream
        .create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["unavailable.>".to_owned()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let spec = DurableConsumer {
        name: "opened_late".to_owned(),
        filter_subject: "unavailable.>".to_owned(),
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 100,
    };

    cluster.kill(0)?;
    wait_until(
        Duration::from_secs(10),
        "the client to see the server gone",
        || {
            let state = nats.connection_state();
            std::future::ready((state != async_nats::connection::State::Connected).then_some(()))
        },
    )
    .await?;

    // What a service did on starting: one try, whose failure stopped it.
    let once = spec.open(&log, DeliverPolicy::All).await;
    assert!(
        matches!(&once, Err(error) if error.is_retryable()),
        "opening a consumer while the log is down fails, retryably: {once:?}"
    );

    // A service stopped while it waits for the log stops at once, with nothing opened.
    let stopped = CancellationToken::new();
    let waiting = tokio::spawn({
        let (spec, log, stopped) = (spec.clone(), log.clone(), stopped.clone());
        async move {
            spec.open_when_available(&log, DeliverPolicy::All, &stopped)
                .await
        }
    });
    let stop_asked = Instant::now();
    stopped.cancel();
    let outcome = waiting.await?;
    assert!(
        matches!(outcome, Ok(None)),
        "stopped while waiting: {outcome:?}"
    );
    assert!(
        stop_asked.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1),
        "the wait ended {:?} after the stop",
        stop_asked.elapsed()
    );

    // Started while the server is down, which it stays until both have failed twice (the
    // consumer's tries are counted: `open_when_available` is this call).
    let running = CancellationToken::new();
    let tries = Arc::new(AtomicUsize::new(0));
    let consumer = tokio::spawn({
        let (spec, log, running, tries) =
            (spec.clone(), log.clone(), running.clone(), tries.clone());
        async move {
            when_available::when_available(&spec.name, &running, LogError::is_retryable, || {
                tries.fetch_add(1, Ordering::Relaxed);
                spec.open(&log, DeliverPolicy::All)
            })
            .await
        }
    });
    let stream = tokio::spawn({
        let (jetstream, running) = (jetstream.clone(), running.clone());
        async move { when_available::stream(&jetstream, STREAM, &running).await }
    });
    wait_until(Duration::from_secs(20), "two failed tries", || {
        std::future::ready((tries.load(Ordering::Relaxed) >= 3).then_some(()))
    })
    .await?;
    assert!(!consumer.is_finished() && !stream.is_finished());
    cluster.restart(0)?;
    let restarted_at = Instant::now();
    let consumer = tokio::time::timeout(Duration::from_secs(30), consumer).await??;
    let stream = tokio::time::timeout(Duration::from_secs(30), stream).await??;
    println!(
        "stream and consumer opened {:.1} s after the server was started again",
        restarted_at.elapsed().as_secs_f64()
    );
    assert!(
        matches!(consumer, Ok(Some(_))),
        "consumer once the log is back: {consumer:?}"
    );
    let mut stream = match stream {
        Ok(Some(stream)) => stream,
        other => anyhow::bail!("stream once the log is back: {other:?}"),
    };
    assert_eq!(stream.info().await?.config.name, STREAM);
    let created = log.consumer_info(&spec.name).await?;
    assert_eq!(created.config.durable_name.as_deref(), Some("opened_late"));
    Ok(())
}
