//! `herald_log::hand_back` against a log server that is killed while a message is handed
//! back: the hand-back is heard once the server is back, and the message comes again within
//! seconds — not after the consumer's ack wait (measured without a hand-back: 53 s after the
//! server was back). A plain negative acknowledgement sent while the server was down was lost
//! in CI's `log_outage` runs; on other machines the client's buffer delivered it after the
//! reconnection, so this test does not tell the two apart everywhere.

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use herald_tests::nats_cluster::NatsCluster;
use herald_tests::wait_until;
use std::time::{Duration, Instant};

/// The consumer's ack wait: what a lost hand-back costs.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// The handed-back message comes again this soon after the server is back.
const AGAIN_WITHIN: Duration = Duration::from_secs(15);
/// How long the server stays down after the hand-back: longer than one send's request timeout
/// (5 s), so that its first sends are lost with the server. An outage's length, not a wait
/// for something to happen.
const DOWN_FOR: Duration = Duration::from_secs(6);

#[tokio::test]
async fn a_hand_back_sent_while_the_log_is_down_is_heard_once_it_is_back() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(1).await?;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.client_urls())
        .await?;
    let jetstream = jetstream::new(nats.clone());
    wait_until(Duration::from_secs(10), "the connection", || async {
        (nats.connection_state() == async_nats::connection::State::Connected).then_some(())
    })
    .await?;
    let log = jetstream
        .create_stream(stream::Config {
            name: "HANDED".to_owned(),
            subjects: vec!["handed.>".to_owned()],
            ..Default::default()
        })
        .await?;
    let reader: consumer::PullConsumer = log
        .create_consumer(consumer::pull::Config {
            durable_name: Some("reader".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            ..Default::default()
        })
        .await?;
    jetstream.publish("handed.one", "1".into()).await?.await?;
    let fetch = || async {
        let mut fetched = reader.fetch().max_messages(1).messages().await?;
        let message = fetched
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("nothing fetched"))?
            .map_err(|error| anyhow::anyhow!(error))?;
        anyhow::Ok(message)
    };
    // The server confirms a hand-back (so that `hand_back` stops sending it): a hand-back it
    // never answered would be sent again until the give-up time, and each would push the
    // message back again.
    fetch()
        .await?
        .double_ack_with(jetstream::AckKind::Nak(None))
        .await
        .map_err(|error| anyhow::anyhow!("a hand-back was not confirmed: {error}"))?;
    let message = fetch().await?;
    // The server has recorded the delivery (and, on this test's file storage, keeps it across
    // its restart: the message is not simply handed out again when the server comes back).
    wait_until(Duration::from_secs(10), "the delivery recorded", || {
        let mut reader = reader.clone();
        async move { (reader.info().await.ok()?.num_ack_pending == 1).then_some(()) }
    })
    .await?;

    cluster.kill(0)?;
    wait_until(Duration::from_secs(10), "the connection lost", || async {
        (nats.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await?;
    herald_log::hand_back::hand_back(message, Duration::from_secs(1));
    tokio::time::sleep(DOWN_FOR).await;
    cluster.restart(0)?;
    let restarted = Instant::now();

    let again = wait_until(
        ACK_WAIT + Duration::from_secs(30),
        "the message again",
        || {
            let reader = reader.clone();
            async move {
                let mut batch = reader
                    .fetch()
                    .max_messages(1)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .ok()?;
                let message = batch.next().await?.ok()?;
                message.ack().await.ok()?;
                Some(restarted.elapsed())
            }
        },
    )
    .await?;
    println!("handed back while the server was down: came again {again:?} after it was back");
    assert!(
        again < AGAIN_WITHIN,
        "the message came again {again:?} after the server was back, not within {AGAIN_WITHIN:?}"
    );
    Ok(())
}
