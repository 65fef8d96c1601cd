//! Configuration changes reach the log exactly once, even when the process that made one
//! could not append it: they are staged in Postgres with the change and relayed.

use herald_tests::{wait_until, Api};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_endpoint_change_is_appended_to_the_log_and_leaves_the_outbox() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("config-log").await?;
    let endpoint = api
        .create_endpoint(
            &tenant,
            json!({ "url": "http://127.0.0.1:9/hook", "ordered": true }),
        )
        .await?;
    let tenant_id = uuid::Uuid::parse_str(&tenant.tenant_id)?;
    let subject = api
        .namespace()?
        .config_subject(herald_schemas::TenantId(tenant_id));
    let (count, last) = api.log_messages_on(&subject).await?;
    assert_eq!(count, 2, "tenant.created and endpoint.created");
    let last = last.unwrap_or_default();
    assert_eq!(last["type"], "endpoint.created.v3");
    assert_eq!(
        last["data"]["actor"]["kind"], "api_key",
        "who made the change"
    );
    assert_eq!(
        last["data"]["endpoint"]["endpoint_id"],
        endpoint.endpoint_id.as_str()
    );
    assert_eq!(last["data"]["endpoint"]["ordered"], true);
    let pool = api.postgres().await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM log_outbox WHERE subject = $1")
        .bind(&subject)
        .fetch_one(&pool)
        .await?;
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn a_change_committed_but_never_appended_is_relayed_once() -> anyhow::Result<()> {
    let api = Api::new();
    // As a command process that died between its commit and its append leaves it.
    let tenant_id = herald_schemas::TenantId::generate();
    let subject = api.namespace()?.config_subject(tenant_id);
    let message = herald_schemas::LogMessage::TenantCreated(herald_schemas::TenantCreated {
        tenant_id,
        name: "died before appending".to_owned(),
        created_at: chrono::Utc::now(),
        actor: herald_schemas::Actor::Operator,
    });
    let pool = api.postgres().await?;
    sqlx::query(
        "INSERT INTO log_outbox (subject, message, staged_at) VALUES ($1, $2, now() - interval '5 seconds')",
    )
    .bind(&subject)
    .bind(message.encode())
    .execute(&pool)
    .await?;

    wait_until(
        Duration::from_secs(10),
        "the relay to append it",
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM log_outbox WHERE subject = $1")
                    .bind(&subject)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (left == 0).then_some(())
        },
    )
    .await?;
    let (count, last) = api.log_messages_on(&subject).await?;
    assert_eq!(count, 1);
    assert_eq!(
        last.unwrap_or_default()["data"]["name"],
        "died before appending"
    );
    Ok(())
}
