//! Grouped log writes (`herald_log::grouped_writes`) against the real NATS server: held for
//! their linger and no longer lost for it — every append is in the stream with the sequence
//! it was answered with, and every grouped acknowledgement reaches the consumer.

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use herald_log::grouped_writes::{GroupedWrites, ACKNOWLEDGEMENT_TIMEOUT};
use herald_tests::{env_or, rand_u32, wait_until};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

struct ScratchStream {
    jetstream: jetstream::Context,
    name: String,
    subject: String,
}

impl ScratchStream {
    /// A stream of its own (named like a test namespace's, so that a run that dies before
    /// deleting it leaves it to `drop_namespace --test-leftovers`).
    async fn create() -> anyhow::Result<Self> {
        let nats = async_nats::connect(env_or("HERALD_NATS_URL", "nats://127.0.0.1:14222")).await?;
        let jetstream = jetstream::new(nats);
        let namespace = format!("t{:08x}", rand_u32());
        let name = format!("{}_LOG", namespace.to_ascii_uppercase());
        let subject = format!("{namespace}.grouped");
        jetstream
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                ..Default::default()
            })
            .await?;
        Ok(Self {
            jetstream,
            name,
            subject,
        })
    }

    async fn delete(self) {
        let _ = self.jetstream.delete_stream(&self.name).await;
    }
}

#[tokio::test]
async fn every_grouped_append_is_in_the_stream_at_the_sequence_it_was_answered_with(
) -> anyhow::Result<()> {
    let scratch = ScratchStream::create().await?;
    let linger = Duration::from_millis(200);
    let writes = GroupedWrites::start(scratch.jetstream.clone(), linger, ACKNOWLEDGEMENT_TIMEOUT);

    // Held for the linger: an append alone is not answered before it is over.
    let started = Instant::now();
    let first = writes
        .append(scratch.subject.clone(), b"0".to_vec())
        .await?;
    assert!(
        started.elapsed() >= linger,
        "answered after {:?}, before the linger of {linger:?} was over",
        started.elapsed()
    );

    // Many at once, more than one group holds.
    let appends = (1..=1_500).map(|n| {
        let (writes, subject) = (writes.clone(), scratch.subject.clone());
        async move { (n, writes.append(subject, n.to_string().into_bytes()).await) }
    });
    let answered = futures::future::join_all(appends).await;
    let mut sequences = BTreeSet::from([first]);
    let stream = scratch.jetstream.get_stream(&scratch.name).await?;
    for (n, sequence) in answered {
        let sequence = sequence?;
        assert!(
            sequences.insert(sequence),
            "sequence {sequence} answered twice"
        );
        let stored = stream.get_raw_message(sequence).await?;
        assert_eq!(stored.payload, n.to_string().into_bytes(), "at {sequence}");
    }
    assert_eq!(sequences.len(), 1_501);
    assert_eq!(stream.clone().info().await?.state.messages, 1_501);
    scratch.delete().await;
    Ok(())
}

#[tokio::test]
async fn every_grouped_acknowledgement_reaches_the_consumer() -> anyhow::Result<()> {
    let scratch = ScratchStream::create().await?;
    for n in 0..300 {
        scratch
            .jetstream
            .publish(scratch.subject.clone(), n.to_string().into())
            .await?
            .await?;
    }
    let stream = scratch.jetstream.get_stream(&scratch.name).await?;
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("grouped".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            // Long enough that a lost acknowledgement shows as still pending.
            ack_wait: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let writes = GroupedWrites::start(
        scratch.jetstream.clone(),
        Duration::from_millis(20),
        ACKNOWLEDGEMENT_TIMEOUT,
    );
    let mut messages = reader.fetch().max_messages(300).messages().await?;
    let mut read = 0;
    while let Some(message) = messages.next().await {
        writes
            .ack(message.map_err(|error| anyhow::anyhow!(error))?)
            .await;
        read += 1;
    }
    assert_eq!(read, 300);
    writes.flush().await;
    wait_until(Duration::from_secs(10), "every acknowledgement", || {
        let reader = reader.clone();
        async move {
            let info = reader.clone().info().await.ok()?.clone();
            (info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 300).then_some(())
        }
    })
    .await?;
    scratch.delete().await;
    Ok(())
}

/// Appends the log never answers (its server gone, or an append lost with it) each fail once
/// the publish timeout is over, counted from when they were sent — not one timeout after
/// another. Awaited one by one, a group of N unanswered appends took N timeouts to fail: after
/// a log outage, delivery's hand-backs of the attempts cut off came 5 s apart, and the read
/// model showed the last of a dozen a minute after the log was back.
#[tokio::test]
async fn unanswered_appends_of_one_group_fail_together_after_the_timeout() -> anyhow::Result<()> {
    let nats = async_nats::connect(env_or("HERALD_NATS_URL", "nats://127.0.0.1:14222")).await?;
    let mut jetstream = jetstream::new(nats.clone());
    let timeout = Duration::from_millis(500);
    jetstream.set_timeout(timeout);
    // Someone listens, so the server does not say "no responders"; nobody answers.
    let subject = format!("t{:08x}.unanswered", rand_u32());
    let _listener = nats.subscribe(subject.clone()).await?;
    nats.flush().await?;
    let writes = GroupedWrites::start(jetstream, Duration::from_millis(20), timeout);

    const APPENDS: usize = 8;
    let started = Instant::now();
    let appends = (0..APPENDS).map(|n| {
        let (writes, subject) = (writes.clone(), subject.clone());
        async move {
            let outcome = writes.append(subject, n.to_string().into_bytes()).await;
            (outcome, started.elapsed())
        }
    });
    let answered = futures::future::join_all(appends).await;
    let mut slowest = Duration::ZERO;
    for (outcome, took) in answered {
        assert!(
            outcome.is_err(),
            "an unanswered append succeeded: {outcome:?}"
        );
        slowest = slowest.max(took);
    }
    assert!(
        slowest < timeout * 3,
        "the last of {APPENDS} unanswered appends failed after {slowest:?}; each times out after {timeout:?}"
    );
    Ok(())
}
