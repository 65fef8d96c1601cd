//! Deletes a namespace's log and retry streams (`bench/run.sh` runs it after each scenario,
//! with Herald stopped): streams left behind accumulate on the server, and the next
//! scenario should meet the server as fresh as its databases.

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "HERALD_NATS_URL")]
    nats_url: String,
    #[arg(long, env = "HERALD_NAMESPACE")]
    namespace: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let namespace = herald_schemas::Namespace::new(&args.namespace)?;
    let nats = async_nats::connect(&args.nats_url)
        .await
        .context("connect to NATS")?;
    let jetstream = async_nats::jetstream::new(nats);
    for stream in [namespace.log_stream(), namespace.retry_stream()] {
        match jetstream.delete_stream(&stream).await {
            Ok(_) => eprintln!("deleted stream {stream}"),
            Err(error) => eprintln!("stream {stream} not deleted: {error}"),
        }
    }
    Ok(())
}
