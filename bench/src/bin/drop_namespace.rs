//! Deletes a namespace's log and retry streams (`bench/run.sh` runs it after each scenario,
//! with Herald stopped): streams left behind accumulate on the server, and the next
//! scenario should meet the server as fresh as its databases.
//!
//! With `--test-leftovers` it deletes instead every stream that test runs and earlier bench
//! runs left behind (namespaces `t…`, `p…`, `s…` of eight hex digits, and `bench_…`): a day
//! of them on a developer's server was 324 streams and 674 MB. `bench/run.sh` runs it before it
//! starts, so `make test`, which ends with the `quick` scenario, leaves none of its own behind.

use anyhow::{Context, Result};
use clap::Parser;
use futures::TryStreamExt;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, env = "HERALD_NATS_URL")]
    nats_url: String,
    #[arg(
        long,
        env = "HERALD_NAMESPACE",
        required_unless_present = "test_leftovers"
    )]
    namespace: Option<String>,
    /// Delete the streams of test and bench runs instead of one namespace's.
    #[arg(long)]
    test_leftovers: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let nats = async_nats::connect(&args.nats_url)
        .await
        .context("connect to NATS")?;
    let jetstream = async_nats::jetstream::new(nats);
    let streams = match (&args.namespace, args.test_leftovers) {
        (_, true) => {
            let names: Vec<String> = jetstream
                .stream_names()
                .try_collect()
                .await
                .context("list streams")?;
            names
                .into_iter()
                .filter(|name| left_by_a_run(name))
                .collect()
        }
        (Some(namespace), false) => {
            let namespace = herald_schemas::Namespace::new(namespace)?;
            vec![namespace.log_stream(), namespace.retry_stream()]
        }
        (None, false) => unreachable!("clap requires a namespace without --test-leftovers"),
    };
    let mut deleted = 0;
    for stream in streams {
        match jetstream.delete_stream(&stream).await {
            Ok(_) => deleted += 1,
            Err(error) => eprintln!("stream {stream} not deleted: {error}"),
        }
    }
    eprintln!("deleted {deleted} streams");
    Ok(())
}

/// Whether a stream belongs to a namespace of a test run (`t`, `p` or `s` and eight hex
/// digits, `tests/`) or of a bench run (`bench_…`).
fn left_by_a_run(stream: &str) -> bool {
    let Some(namespace) = stream
        .strip_suffix("_LOG")
        .or_else(|| stream.strip_suffix("_RETRIES"))
    else {
        return false;
    };
    let test_run = namespace.len() == 9
        && namespace.starts_with(['T', 'P', 'S'])
        && namespace[1..].chars().all(|c| c.is_ascii_hexdigit());
    test_run || namespace.starts_with("BENCH_")
}

#[cfg(test)]
mod tests {
    use super::left_by_a_run;

    #[test]
    fn only_streams_of_test_and_bench_runs_are_taken() {
        for left in [
            "T01C1B02C_LOG",
            "P3F27B07D_RETRIES",
            "S6E16A2DD_LOG",
            "BENCH_11715_LOG",
        ] {
            assert!(left_by_a_run(left), "{left}");
        }
        for kept in [
            "HERALD_LOG",
            "HERALD_RETRIES",
            "T01C1B02C_OTHER",
            "TABCDEFGHI_LOG",
            "SHOP_LOG",
        ] {
            assert!(!left_by_a_run(kept), "{kept}");
        }
    }
}
