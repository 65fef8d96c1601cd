//! The projectors' batches. A projection that lags finds its next batch already waiting in
//! the log and gathers it at once, so the bound on payload bytes, not only the count, decides
//! how much one batch holds in memory (events may carry up to 256 KiB each).

use async_nats::jetstream::{self, stream};
use herald_projector::batch::{next_batch, read_from, Pulled};
use herald_projector::reader_watch::ReaderWatch;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MESSAGE_BYTES: usize = 10_000;

#[tokio::test]
async fn a_lagging_batch_stops_at_its_byte_bound() -> anyhow::Result<()> {
    let url =
        std::env::var("HERALD_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".to_owned());
    // A test namespace (`t` and eight hex digits), so a run that dies leaves nothing the
    // leftover sweep does not find.
    let prefix = format!("t{:08x}", rand::random::<u32>());
    let namespace = herald_schemas::Namespace::new(&prefix)?;
    let jetstream = jetstream::new(async_nats::connect(&url).await?);
    let log = jetstream
        .create_stream(stream::Config {
            name: namespace.log_stream(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await?;
    let outcome = batches(&jetstream, &log, &prefix).await;
    jetstream.delete_stream(namespace.log_stream()).await?;
    outcome
}

async fn batches(
    jetstream: &jetstream::Context,
    log: &stream::Stream,
    prefix: &str,
) -> anyhow::Result<()> {
    for _ in 0..50 {
        jetstream
            .publish(
                format!("{prefix}.events.x"),
                vec![b'x'; MESSAGE_BYTES].into(),
            )
            .await?
            .await?;
    }
    let never = CancellationToken::new();
    let reader = ReaderWatch::default();
    let window = Duration::from_secs(2);
    let mut messages = read_from(log, String::new(), 1).await?;
    let mut next = async |max: usize, max_bytes: usize| -> anyhow::Result<usize> {
        match next_batch(&mut messages, max, max_bytes, window, &never, &reader).await {
            Pulled::Batch(batch) => Ok(batch.len()),
            Pulled::Interrupted | Pulled::Shutdown => anyhow::bail!("the log read stopped"),
        }
    };
    // The message that reaches the bound is the batch's last.
    assert_eq!(next(1_000, 3 * MESSAGE_BYTES + 1).await?, 4);
    assert_eq!(next(1_000, MESSAGE_BYTES).await?, 1);
    // The count bounds as before.
    assert_eq!(next(10, usize::MAX).await?, 10);
    // The rest, with nothing bounding but the window.
    assert_eq!(next(1_000, usize::MAX).await?, 35);
    Ok(())
}
