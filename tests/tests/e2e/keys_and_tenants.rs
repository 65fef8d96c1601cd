//! API keys with scopes and revocation, operators' tenant administration (suspension, ingest
//! rate limits), and the audit trail of configuration changes.

use herald_tests::receiver::Receiver;
use herald_tests::{Api, Tenant};
use reqwest::Method;
use serde_json::{json, Value};

async fn make_key(api: &Api, tenant: &Tenant, body: Value) -> anyhow::Result<(u16, Value)> {
    api.post(tenant, "/v1/api_keys", body).await
}

#[tokio::test]
async fn keys_have_scopes_and_a_revoked_key_is_refused() -> anyhow::Result<()> {
    let api = Api::new();
    let tenant = api.create_tenant("keys").await?;
    let (status, reader) = make_key(
        &api,
        &tenant,
        json!({"name": "dashboards", "scopes": ["read"]}),
    )
    .await?;
    assert_eq!(status, 201, "{reader}");
    assert_eq!(reader["scopes"], json!(["read"]));
    let reader = Tenant {
        tenant_id: tenant.tenant_id.clone(),
        api_key: reader["api_key"].as_str().unwrap_or_default().to_owned(),
    };
    let (status, _) = api.get(&reader, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 200);
    let (status, problem) = api
        .post_event(&reader, json!({"type": "a.b", "payload": {}}))
        .await?;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("write"),
        "{problem}"
    );
    // A key cannot grant what it lacks.
    let (status, _) = make_key(
        &api,
        &reader,
        json!({"name": "escalate", "scopes": ["write"]}),
    )
    .await?;
    assert_eq!(status, 403);

    let (status, writer) = make_key(&api, &tenant, json!({"name": "billing"})).await?;
    assert_eq!(status, 201, "{writer}");
    assert_eq!(writer["scopes"], json!(["read", "write"]));
    let writer_id = writer["key_id"].as_str().unwrap_or_default().to_owned();
    let writer = Tenant {
        tenant_id: tenant.tenant_id.clone(),
        api_key: writer["api_key"].as_str().unwrap_or_default().to_owned(),
    };
    let (status, listed) = api.get(&tenant, "/v1/api_keys").await?;
    assert_eq!(status, 200);
    let keys = listed["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 3, "{listed}");
    assert!(
        !listed.to_string().contains("hk_"),
        "no key is shown again: {listed}"
    );
    assert_eq!(keys[0]["name"], "billing");

    let (status, _) = api.get(&writer, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 200);
    let (status, _) = api
        .delete(&tenant, &format!("/v1/api_keys/{writer_id}"))
        .await?;
    assert_eq!(status, 204);
    let (status, problem) = api.get(&writer, "/v1/webhook_endpoints").await?;
    assert_eq!(
        status, 401,
        "refused at once by the process that revoked it: {problem}"
    );
    let (status, _) = api
        .delete(&tenant, &format!("/v1/api_keys/{writer_id}"))
        .await?;
    assert_eq!(status, 204, "revoking twice is harmless");
    let (_, listed) = api.get(&tenant, "/v1/api_keys").await?;
    assert!(listed["data"][0]["revoked_at"].is_string(), "{listed}");

    // Other tenants' keys are not found; bad input names the field.
    let other = api.create_tenant("keys-other").await?;
    let (status, _) = api
        .delete(&other, &format!("/v1/api_keys/{writer_id}"))
        .await?;
    assert_eq!(status, 404);
    let (status, _) = api.delete(&tenant, "/v1/api_keys/not-a-uuid").await?;
    assert_eq!(status, 422);
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["admin"]}), "scopes[0]"),
        (json!({"scopes": ["read"]}), "name"),
    ] {
        let (status, content_type, problem) = api
            .call(
                Method::POST,
                "/v1/api_keys",
                &tenant.api_key,
                Some(body.clone()),
            )
            .await?;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    Ok(())
}

#[tokio::test]
async fn operators_list_rename_and_suspend_tenants() -> anyhow::Result<()> {
    let api = Api::new();
    let admin = api.herald.admin_token.clone();
    let tenant = api.create_tenant("admin-me").await?;
    let path = format!("/admin/v1/tenants/{}", tenant.tenant_id);

    let mut found = None;
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = match &after {
            Some(after) => format!("/admin/v1/tenants?limit=50&after={after}"),
            None => "/admin/v1/tenants?limit=50".to_owned(),
        };
        let (status, _, listed) = api.call(Method::GET, &page, &admin, None).await?;
        assert_eq!(status, 200, "{listed}");
        if let Some(tenant) = listed["data"].as_array().and_then(|data| {
            data.iter()
                .find(|row| row["tenant_id"] == json!(tenant.tenant_id))
        }) {
            found = Some(tenant.clone());
            break;
        }
        match listed["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let found = found.expect("the tenant is listed");
    assert_eq!(found["name"], "admin-me");
    assert_eq!(found["suspended"], false);

    let (status, _, renamed) = api
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"name": "renamed", "suspended": true})),
        )
        .await?;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "renamed");
    assert_eq!(renamed["suspended"], true);
    let (status, problem) = api.get(&tenant, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 403, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("suspended"));
    let (status, _) = api
        .post_event(&tenant, json!({"type": "a.b", "payload": {}}))
        .await?;
    assert_eq!(status, 403);
    let (status, _, _) = api
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"suspended": false})),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = api.get(&tenant, "/v1/webhook_endpoints").await?;
    assert_eq!(status, 200, "resumed");

    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"suspended": "yes"}), "suspended"),
        (
            json!({"ingest_rate_limit": {"per_second": 0}}),
            "ingest_rate_limit.per_second",
        ),
    ] {
        let (status, _, problem) = api
            .call(Method::PATCH, &path, &admin, Some(body.clone()))
            .await?;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, _, _) = api
        .call(
            Method::PATCH,
            &format!("/admin/v1/tenants/{}", uuid::Uuid::now_v7()),
            &admin,
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .call(
            Method::PATCH,
            &path,
            &tenant.api_key,
            Some(json!({"suspended": true})),
        )
        .await?;
    assert_eq!(status, 401, "a tenant's key is not the admin token");
    let (status, _, _) = api
        .call(Method::GET, "/admin/v1/tenants?limit=0", &admin, None)
        .await?;
    assert_eq!(status, 422);
    let (_, _, unchanged) = api
        .call(Method::GET, "/admin/v1/tenants?limit=1000", &admin, None)
        .await?;
    let row = unchanged["data"].as_array().and_then(|data| {
        data.iter()
            .find(|row| row["tenant_id"] == json!(tenant.tenant_id))
            .cloned()
    });
    if let Some(row) = row {
        assert_eq!(row["name"], "renamed");
        assert_eq!(row["suspended"], false);
        assert_eq!(row["ingest_rate_limit"], Value::Null);
    }
    Ok(())
}

#[tokio::test]
async fn over_its_ingest_limit_a_tenant_gets_429_with_retry_after() -> anyhow::Result<()> {
    let api = Api::new();
    let admin = api.herald.admin_token.clone();
    let tenant = api.create_tenant("limited").await?;
    let path = format!("/admin/v1/tenants/{}", tenant.tenant_id);
    let (status, _, limited) = api
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"ingest_rate_limit": {"per_second": 5, "burst": 5}})),
        )
        .await?;
    assert_eq!(status, 200, "{limited}");
    assert_eq!(
        limited["ingest_rate_limit"],
        json!({"per_second": 5, "burst": 5})
    );
    let started = std::time::Instant::now();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..30 {
        let response = api
            .http
            .post(api.url("/v1/events"))
            .bearer_auth(&tenant.api_key)
            .json(&json!({"type": "a.b", "payload": {}}))
            .send()
            .await?;
        match response.status().as_u16() {
            202 => accepted += 1,
            429 => {
                refused += 1;
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<u64>().ok());
                assert!(retry_after.is_some_and(|seconds| seconds >= 1));
                let problem: Value = response.json().await?;
                assert!(
                    problem["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("5 events a second"),
                    "{problem}"
                );
            }
            other => anyhow::bail!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 5.0 + 5.0 * elapsed;
    assert!(
        f64::from(accepted) <= allowed.floor(),
        "{accepted} accepted in {elapsed:.2} s"
    );
    assert!(accepted >= 5, "the burst is admitted: {accepted}");
    assert!(refused > 0);
    // Removing the limit admits everything again.
    let (status, _, _) = api
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"ingest_rate_limit": null})),
        )
        .await?;
    assert_eq!(status, 200);
    for _ in 0..10 {
        let (status, body) = api
            .post_event(&tenant, json!({"type": "a.b", "payload": {}}))
            .await?;
        assert_eq!(status, 202, "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn every_configuration_change_is_in_the_audit_trail_with_who_made_it() -> anyhow::Result<()> {
    let api = Api::new();
    let admin = api.herald.admin_token.clone();
    let tenant = api.create_tenant("audited").await?;
    let receiver = Receiver::start().await;
    let (_, key) = make_key(&api, &tenant, json!({"name": "ops"})).await?;
    let ops_id = key["key_id"].as_str().unwrap_or_default().to_owned();
    let ops = Tenant {
        tenant_id: tenant.tenant_id.clone(),
        api_key: key["api_key"].as_str().unwrap_or_default().to_owned(),
    };
    let endpoint = api
        .create_endpoint(
            &ops,
            json!({"url": receiver.url, "headers": {"Authorization": "Bearer audit-secret-value"}}),
        )
        .await?;
    let path = format!("/v1/webhook_endpoints/{}", endpoint.endpoint_id);
    api.patch(&ops, &path, json!({"description": "audited"}))
        .await?;
    api.post(&ops, &format!("{path}/secret/rotate"), json!({}))
        .await?;
    api.delete(&ops, &path).await?;
    api.call(
        Method::PATCH,
        &format!("/admin/v1/tenants/{}", tenant.tenant_id),
        &admin,
        Some(json!({"name": "audited tenant"})),
    )
    .await?;
    api.delete(&tenant, &format!("/v1/api_keys/{ops_id}"))
        .await?;

    let (status, trail) = api.get(&tenant, "/v1/audit").await?;
    assert_eq!(status, 200, "{trail}");
    let changes: Vec<String> = trail["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| row["change"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        changes,
        [
            "api_key.revoked.v1",
            "tenant.updated.v1",
            "endpoint.deleted.v1",
            "endpoint.secret_rotated.v2",
            "endpoint.updated.v2",
            "endpoint.created.v3",
            "api_key.created.v1",
            "tenant.created.v2",
        ]
    );
    let rows = trail["data"].as_array().cloned().unwrap_or_default();
    let ops_actor = json!({"kind": "api_key", "key_id": ops_id});
    assert_eq!(rows[1]["actor"], json!({"kind": "operator"}));
    for row in &rows[2..6] {
        assert_eq!(row["actor"], ops_actor, "{row}");
    }
    assert_eq!(rows[7]["actor"], json!({"kind": "operator"}));
    assert!(
        !trail.to_string().contains("audit-secret-value"),
        "no secret in the trail"
    );
    assert!(
        !trail.to_string().contains("whsec_"),
        "no secret in the trail"
    );

    // Pages of two, walked by cursor, give the same changes; `since` cuts older ones off.
    let mut walked = Vec::new();
    let mut next = Some("/v1/audit?limit=2".to_owned());
    while let Some(page) = next.take() {
        let (status, body) = api.get(&tenant, &page).await?;
        assert_eq!(status, 200, "{body}");
        walked.extend(body["data"].as_array().cloned().unwrap_or_default());
        next = body["next_cursor"]
            .as_str()
            .map(|cursor| format!("/v1/audit?limit=2&cursor={cursor}"));
    }
    assert_eq!(walked, rows);
    let since = rows[2]["changed_at"]
        .as_str()
        .unwrap_or_default()
        .replace('+', "%2B");
    let (_, recent) = api
        .get(&tenant, &format!("/v1/audit?since={since}"))
        .await?;
    assert_eq!(recent["data"].as_array().map(Vec::len), Some(3));
    // Another tenant sees none of it.
    let other = api.create_tenant("audited-other").await?;
    let (_, theirs) = api.get(&other, "/v1/audit").await?;
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(1), "{theirs}");
    let (status, _) = api.get(&tenant, "/v1/audit?cursor=bad").await?;
    assert_eq!(status, 422);
    Ok(())
}
