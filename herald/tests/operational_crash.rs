//! Herald's own events survive the command process dying: facts recorded while no command
//! process runs are announced when one is back, and a process killed while announcing leaves
//! every fact announced exactly once in the log. Runs `herald api` (command and query),
//! `herald delivery` and `herald projector` as separate child processes.

use herald_tests::kill_load::read_log;
use herald_tests::process::HeraldProcess;
use herald_tests::receiver::{Receiver, Reply};
use herald_tests::{wait_until, Api};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn dead_letters_are_announced_exactly_once_across_command_crashes() -> anyhow::Result<()> {
    let mut api_process = HeraldProcess::start_service_on(
        HERALD,
        &herald_tests::process::StackUrls::from_env(),
        "api",
        &[],
    )
    .await?;
    let _delivery = api_process.sibling("delivery").await?;
    let _projector = api_process.sibling("projector").await?;
    let api = Api::with(api_process.herald.clone());
    let tenant = api.create_tenant("operational-crash").await?;
    let operations = Receiver::start().await;
    api.create_endpoint(
        &tenant,
        json!({ "url": operations.url, "events": ["herald.delivery.dead_lettered"] }),
    )
    .await?;
    // 429 is retryable yet says nothing to the breaker: with one attempt allowed, every
    // event is dead-lettered at once and the breaker never holds deliveries back.
    const EVENTS: usize = 400;
    let refusing = Receiver::start().await;
    refusing.script((0..EVENTS).map(|_| Reply::status(429)));
    api.create_endpoint(
        &tenant,
        json!({ "url": refusing.url, "events": ["crash.test"], "retry_policy": { "max_attempts": 1 } }),
    )
    .await?;

    // While announcements flow, the command process dies.
    let mut produced = HashSet::new();
    for index in 0..EVENTS / 2 {
        produced.insert(
            api.send_event(
                &tenant,
                json!({ "type": "crash.test", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    wait_until(Duration::from_secs(30), "announcements flowing", || async {
        (operations.distinct_ids().len() >= 20).then_some(())
    })
    .await?;
    api_process.kill()?;
    let announced_before_restart = operations.distinct_ids().len();
    api_process.launch().await?;

    // Then the next half is dead-lettered while no command process runs.
    for index in EVENTS / 2..EVENTS {
        produced.insert(
            api.send_event(
                &tenant,
                json!({ "type": "crash.test", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    api_process.kill()?;
    wait_until(
        Duration::from_secs(30),
        "every event dead-lettered",
        || async { (refusing.count() >= EVENTS).then_some(()) },
    )
    .await?;
    api_process.launch().await?;

    let announced = wait_until(
        Duration::from_secs(90),
        "every dead letter announced",
        || async {
            let ids = operations.distinct_ids();
            (ids.len() >= EVENTS).then_some(ids)
        },
    )
    .await?;
    assert_eq!(announced.len(), EVENTS, "one announcement per dead letter");
    assert!(announced.is_disjoint(&produced));
    // The log holds each announcement once, however often its fact was read.
    let log = read_log(&api).await?;
    let operational: Vec<usize> = log
        .events
        .iter()
        .filter(|(event_id, _)| !produced.contains(*event_id))
        .map(|(_, copies)| *copies)
        .collect();
    assert_eq!(operational.len(), EVENTS, "announcements in the log");
    assert!(
        operational.iter().all(|copies| *copies == 1),
        "an announcement appended twice"
    );
    eprintln!(
        "{announced_before_restart} of {} announced when the first kill came",
        EVENTS / 2
    );
    Ok(())
}
