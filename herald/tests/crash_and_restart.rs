//! Durability of the running binary: a worker killed with SIGKILL mid-flight loses nothing,
//! and a graceful stop hands in-flight work back at once instead of after the ack wait.
//! Each test runs `herald all` as a child process on its own resources.

use herald_tests::process::HeraldProcess;
use herald_tests::receiver::Receiver;
use herald_tests::{wait_until, Api, Tenant};
use serde_json::json;
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

async fn send_events(api: &Api, tenant: &Tenant, count: usize) -> anyhow::Result<Vec<String>> {
    let mut event_ids = Vec::with_capacity(count);
    for index in 0..count {
        event_ids.push(
            api.send_event(
                tenant,
                json!({ "type": "t", "payload": { "index": index } }),
            )
            .await?,
        );
    }
    Ok(event_ids)
}

async fn all_delivered(
    api: &Api,
    tenant: &Tenant,
    event_ids: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    for event_id in event_ids {
        wait_until(within, &format!("event {event_id} delivered"), || async {
            let (status, event) = api
                .get(tenant, &format!("/v1/events/{event_id}"))
                .await
                .ok()?;
            (status == 200 && event["status"] == "delivered").then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn sigkill_mid_flight_loses_no_accepted_event() -> anyhow::Result<()> {
    // A short ack wait so that the test need not wait a minute for redelivery.
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_ACK_WAIT_MS", "3000"),
            ("HERALD_REQUEST_TIMEOUT_MS", "2000"),
        ],
    )
    .await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("crash").await?;
    let receiver = Receiver::start().await;
    // Slow answers keep every attempt in flight when the process is killed.
    receiver.set_delay(Duration::from_secs(3));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let event_ids = send_events(&api, &tenant, 60).await?;
    wait_until(
        Duration::from_secs(20),
        "some deliveries in flight",
        || async { (receiver.count() >= 10).then_some(()) },
    )
    .await?;
    herald.kill()?;
    assert_eq!(receiver.answered(), 0, "attempts finished before the kill");

    receiver.set_delay(Duration::ZERO);
    herald.launch().await?;
    all_delivered(&api, &tenant, &event_ids, Duration::from_secs(30)).await?;
    let received = receiver.distinct_ids();
    assert!(event_ids.iter().all(|event_id| received.contains(event_id)));
    Ok(())
}

#[tokio::test]
async fn sigterm_hands_in_flight_work_back_without_waiting_for_the_ack_timeout(
) -> anyhow::Result<()> {
    // The ack wait is a minute: only an explicit hand-back gets the work redone sooner.
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_ACK_WAIT_MS", "60000"),
            ("HERALD_REQUEST_TIMEOUT_MS", "20000"),
            ("HERALD_SHUTDOWN_GRACE_MS", "300"),
        ],
    )
    .await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("graceful").await?;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(10));
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;

    let event_ids = send_events(&api, &tenant, 20).await?;
    wait_until(Duration::from_secs(10), "attempts in flight", || async {
        (receiver.count() >= 5).then_some(())
    })
    .await?;
    let stop_took = herald.terminate().await?;
    assert!(
        stop_took < Duration::from_secs(5),
        "graceful stop took {stop_took:?}"
    );

    receiver.set_delay(Duration::ZERO);
    let restarted = Instant::now();
    herald.launch().await?;
    all_delivered(&api, &tenant, &event_ids, Duration::from_secs(20)).await?;
    let took = restarted.elapsed();
    assert!(took < Duration::from_secs(20), "redelivery took {took:?}");
    Ok(())
}

#[tokio::test]
async fn an_ordered_lane_survives_sigkill_and_keeps_its_order() -> anyhow::Result<()> {
    // The first delivery fails and waits four seconds for its retry: the process is killed
    // while the lane's head is waiting.
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_RETRY_INITIAL_DELAY_MS", "4000"),
            ("HERALD_REQUEST_TIMEOUT_MS", "2000"),
        ],
    )
    .await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("ordered-crash").await?;
    let receiver = Receiver::start().await;
    receiver.script([herald_tests::receiver::Reply::status(503)]);
    api.create_endpoint(&tenant, json!({ "url": receiver.url, "ordered": true }))
        .await?;
    let event_ids = send_events(&api, &tenant, 10).await?;
    wait_until(Duration::from_secs(20), "the first attempt", || async {
        (receiver.count() >= 1).then_some(())
    })
    .await?;
    herald.kill()?;
    assert_eq!(receiver.count(), 1, "the lane went past a failed delivery");

    herald.launch().await?;
    all_delivered(&api, &tenant, &event_ids, Duration::from_secs(40)).await?;
    let indices: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|request| request.json()["data"]["index"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(indices, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(receiver.max_in_flight(), 1);
    Ok(())
}

#[tokio::test]
async fn a_graceful_stop_gives_ordered_lanes_back_at_once() -> anyhow::Result<()> {
    let mut herald = HeraldProcess::start(
        HERALD,
        &[
            ("HERALD_RETRY_INITIAL_DELAY_MS", "1000"),
            ("HERALD_SHUTDOWN_GRACE_MS", "300"),
        ],
    )
    .await?;
    let api = Api::with(herald.herald.clone());
    let tenant = api.create_tenant("ordered-graceful").await?;
    let receiver = Receiver::start().await;
    receiver.script([herald_tests::receiver::Reply::status(503)]);
    api.create_endpoint(&tenant, json!({ "url": receiver.url, "ordered": true }))
        .await?;
    let event_ids = send_events(&api, &tenant, 5).await?;
    wait_until(Duration::from_secs(20), "the first attempt", || async {
        (receiver.count() >= 1).then_some(())
    })
    .await?;
    herald.terminate().await?;

    // A lease left behind would hold the lane for 10 s.
    let restarted = Instant::now();
    herald.launch().await?;
    all_delivered(&api, &tenant, &event_ids, Duration::from_secs(20)).await?;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the lane resumed after {took:?}"
    );
    let indices: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|request| request.json()["data"]["index"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(indices, [0, 0, 1, 2, 3, 4]);
    Ok(())
}

#[tokio::test]
async fn ordered_lanes_are_shared_between_delivery_processes_and_keep_their_order(
) -> anyhow::Result<()> {
    let first = HeraldProcess::start(HERALD, &[]).await?;
    let api = Api::with(first.herald.clone());
    let tenant = api.create_tenant("ordered-shared").await?;
    let mut receivers = Vec::new();
    for _ in 0..6 {
        let receiver = Receiver::start().await;
        receiver.set_delay(Duration::from_millis(20));
        api.create_endpoint(&tenant, json!({ "url": receiver.url, "ordered": true }))
            .await?;
        receivers.push(receiver);
    }
    let pool = api.postgres().await?;
    let owners = || async {
        let owners: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner, count(*) FROM ordered_lanes WHERE owner IS NOT NULL GROUP BY owner ORDER BY owner",
        )
        .fetch_all(&pool)
        .await
        .ok()?;
        Some(owners)
    };
    wait_until(
        Duration::from_secs(10),
        "one process holding all lanes",
        || async {
            let owners = owners().await?;
            (owners.len() == 1 && owners[0].1 == 6).then_some(())
        },
    )
    .await?;

    let _second = first.sibling("delivery").await?;
    wait_until(
        Duration::from_secs(20),
        "the lanes shared 3 and 3",
        || async {
            let owners = owners().await?;
            (owners.iter().map(|(_, count)| *count).collect::<Vec<_>>() == [3, 3]).then_some(())
        },
    )
    .await?;

    let event_ids = send_events(&api, &tenant, 20).await?;
    all_delivered(&api, &tenant, &event_ids, Duration::from_secs(30)).await?;
    for receiver in &receivers {
        let indices: Vec<i64> = receiver
            .requests()
            .iter()
            .map(|request| request.json()["data"]["index"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(indices, (0..20).collect::<Vec<_>>());
        assert_eq!(receiver.max_in_flight(), 1);
    }
    Ok(())
}
