//! `GET /v1/events` and the `status` filter of `GET /v1/deliveries`: complete pages in a
//! stable order, filters that filter, another tenant's events never listed, garbage refused.

use herald_tests::receiver::Receiver;
use herald_tests::Api;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn all_pages(
    api: &Api,
    tenant: &herald_tests::Tenant,
    query: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(cursor) => format!("/v1/events?{query}&limit=3&cursor={cursor}"),
            None => format!("/v1/events?{query}&limit=3"),
        };
        let (status, page) = api.get(tenant, &path).await?;
        anyhow::ensure!(status == 200, "{path}: {status} {page}");
        items.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
    anyhow::bail!("more than 100 pages")
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn events_are_listed_newest_first_page_by_page_and_filtered() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("listing").await?;
    let stranger = api.create_tenant("listing-other").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    api.create_endpoint(&stranger, json!({ "url": receiver.url }))
        .await?;
    let mut sent = Vec::new();
    for n in 0..7 {
        let kind = if n % 2 == 0 {
            "order.created"
        } else {
            "order.paid"
        };
        sent.push((
            kind,
            api.send_event(&tenant, json!({ "type": kind, "payload": { "n": n } }))
                .await?,
        ));
    }
    api.send_event(&stranger, json!({ "type": "order.created", "payload": {} }))
        .await?;
    for (_, event_id) in &sent {
        api.wait_for_event_status(&tenant, event_id, "delivered")
            .await?;
    }

    let listed = all_pages(&api, &tenant, "").await?;
    let listed_ids = ids(&listed, "event_id");
    let mut expected: Vec<String> = sent.iter().map(|(_, id)| id.clone()).collect();
    expected.reverse();
    // Sent one after another, so newest first is the reverse of sending.
    assert_eq!(listed_ids, expected, "all events, newest first, once each");
    assert_eq!(listed[0]["status"], "delivered");
    assert!(listed[0].get("payload").is_none());

    let paid = all_pages(&api, &tenant, "type=order.paid").await?;
    assert_eq!(paid.len(), 3);
    assert!(paid.iter().all(|event| event["type"] == "order.paid"));
    let both = all_pages(&api, &tenant, "type=order.paid,order.created").await?;
    assert_eq!(both.len(), 7);
    assert_eq!(all_pages(&api, &tenant, "status=delivered").await?.len(), 7);
    assert!(all_pages(&api, &tenant, "status=pending,failed")
        .await?
        .is_empty());

    // since/until split the list at an event's acceptance time.
    let middle = &listed[3];
    let at = middle["accepted_at"].as_str().unwrap_or_default();
    let at = at.replace('+', "%2B");
    let newer = all_pages(&api, &tenant, &format!("since={at}")).await?;
    let older = all_pages(&api, &tenant, &format!("until={at}")).await?;
    assert_eq!(newer.len() + older.len(), 7);
    assert!(ids(&newer, "event_id").contains(&ids(&listed[3..4], "event_id")[0]));

    let stranger_ids: HashSet<String> = ids(&all_pages(&api, &stranger, "").await?, "event_id")
        .into_iter()
        .collect();
    assert_eq!(stranger_ids.len(), 1);
    assert!(listed_ids.iter().all(|id| !stranger_ids.contains(id)));

    for bad in [
        "status=done",
        "limit=0",
        "limit=251",
        "cursor=nonsense",
        "since=yesterday",
        "type=,",
        "type=order%20paid",
        "type=a,,b",
        // Empty is not a time, a cursor or a number: the document says what each must be.
        "since=",
        "limit=",
        "cursor=",
    ] {
        let (status, problem) = api.get(&tenant, &format!("/v1/events?{bad}")).await?;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert!(problem["detail"].as_str().is_some(), "{bad}: {problem}");
    }
    Ok(())
}

#[tokio::test]
async fn attempts_are_filtered_by_their_delivery_status() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("delivery-status").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": receiver.url }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "a.b", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let (status, page) = api.get(&tenant, "/v1/deliveries?status=succeeded").await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        ids(
            page["data"].as_array().map_or(&[][..], Vec::as_slice),
            "event_id"
        ),
        [event_id]
    );
    let (_, page) = api
        .get(&tenant, "/v1/deliveries?status=dead_lettered,failed")
        .await?;
    assert_eq!(page["data"], json!([]));
    let (status, problem) = api.get(&tenant, "/v1/deliveries?status=ok").await?;
    assert_eq!(status, 422, "{problem}");
    Ok(())
}
