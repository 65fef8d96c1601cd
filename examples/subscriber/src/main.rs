//! Follows Herald's log and prints one line per message; see `docs/subscribers.md`.
//!
//! ```sh
//! cargo run -p herald-example-subscriber -- --from new
//! cargo run -p herald-example-subscriber -- --subject 'herald.config.>' --from 2025-06-02T09:00:00Z --restart
//! ```

use clap::Parser;
use herald_example_subscriber::{follow, Start, Subscription};

/// Follows Herald's log with a durable pull consumer and prints one line per message.
#[derive(Debug, Parser)]
struct Arguments {
    #[arg(
        long,
        env = "HERALD_NATS_URL",
        default_value = "nats://127.0.0.1:14222"
    )]
    nats_url: String,
    /// Herald's namespace: the stream is `<NAMESPACE>_LOG`, subjects start with `<namespace>.`.
    #[arg(long, env = "HERALD_NAMESPACE", default_value = "herald")]
    namespace: String,
    /// Subjects to read (default `<namespace>.attempts.>`: attempt records and deferrals).
    #[arg(long)]
    subject: Option<String>,
    /// The durable consumer's name; it keeps this subscriber's position between runs.
    #[arg(long, default_value = "example_subscriber")]
    consumer: String,
    /// Where a new consumer starts: `all`, `new`, a stream sequence or an RFC 3339 time.
    /// Ignored when the consumer exists already (it resumes where it was) unless --restart.
    #[arg(long, default_value = "all")]
    from: Start,
    /// Delete the consumer first, so that it starts again at --from.
    #[arg(long)]
    restart: bool,
    /// Stop after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    limit: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    let namespace = herald_schemas::Namespace::new(&arguments.namespace)?;
    let subscription = Subscription::new(
        namespace.log_stream(),
        arguments.consumer,
        arguments
            .subject
            .unwrap_or_else(|| namespace.attempts_filter()),
        arguments.from,
    );
    let client = async_nats::connect(&arguments.nats_url).await?;
    let jetstream = async_nats::jetstream::new(client.clone());
    let consumer = subscription.open(&jetstream, arguments.restart).await?;
    eprintln!(
        "following {} on {} as `{}`",
        subscription.filter_subject, subscription.stream, subscription.durable_name
    );
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    follow(&consumer, arguments.limit, stop, |seen| {
        println!("{}", seen.line());
    })
    .await?;
    // The last acknowledgements are still in the client's buffer.
    client.flush().await?;
    Ok(())
}
