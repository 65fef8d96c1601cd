//! Delivery ignores proxy settings in its environment. A proxy would take the connection to the
//! receiver out of the SSRF guard's hands: the guard runs as the DNS resolver, a proxy given as
//! an IP literal is never resolved, and the receiver's host would be resolved by the proxy.
//! Its own binary: it sets the proxy variables for the whole process before any Herald starts.

use anyhow::Context;
use herald_tests::receiver::Receiver;
use herald_tests::{start_with, Api};
use serde_json::json;
use std::sync::OnceLock;

/// A receiver posing as the proxy that every proxy variable names. It lives on a runtime of
/// its own because each test has its own runtime and the variables are set once per process.
fn proxy() -> &'static Receiver {
    static PROXY: OnceLock<Receiver> = OnceLock::new();
    PROXY.get_or_init(|| {
        let (started, starting) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let _ = started.send(Receiver::start().await);
                std::future::pending::<()>().await;
            });
        });
        let proxy = starting.recv().expect("proxy receiver starts");
        let proxy_url = proxy.url.trim_end_matches("/hook").to_owned();
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(name, &proxy_url);
        }
        // The harness and Herald reach Herald's API and the stores at 127.0.0.1; that is
        // exempted so that they still work. Receivers are addressed as `localhost`, which a
        // client that honours these variables would send through the proxy.
        for name in ["NO_PROXY", "no_proxy"] {
            std::env::set_var(name, "127.0.0.1");
        }
        proxy
    })
}

/// The endpoint URL of `receiver`, by a name the worker resolves (through the guard).
fn by_name(receiver: &Receiver) -> String {
    receiver.url.replace("127.0.0.1", "localhost")
}

#[tokio::test]
async fn a_refused_target_is_not_reached_through_a_proxy_from_the_environment() -> anyhow::Result<()>
{
    let proxy = proxy();
    // Ingest admits loopback targets (the harness's default); delivery admits none.
    let api = Api::with(start_with(|config| {
        config.delivery.allowed_target_cidrs = String::new();
    })?);
    let tenant = api.create_tenant("proxy-refused").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": by_name(&receiver) }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    let event = api
        .wait_for_event_status(&tenant, &event_id, "failed")
        .await
        .with_context(|| {
            format!(
                "the proxy got {} request(s), the receiver {}",
                proxy.count(),
                receiver.count()
            )
        })?;
    assert_eq!(event["deliveries"][0]["status"], "failed");
    assert_eq!(event["deliveries"][0]["last_error_code"], "target_refused");
    assert_eq!(receiver.count(), 0, "the refused receiver was reached");
    assert_eq!(proxy.count(), 0, "a request went through the proxy");
    Ok(())
}

#[tokio::test]
async fn an_allowed_target_is_delivered_to_directly_not_through_the_proxy() -> anyhow::Result<()> {
    let proxy = proxy();
    // The harness's default: ingest and delivery both admit loopback targets.
    let api = Api::with(start_with(|_| {})?);
    let tenant = api.create_tenant("proxy-allowed").await?;
    let receiver = Receiver::start().await;
    api.create_endpoint(&tenant, json!({ "url": by_name(&receiver) }))
        .await?;
    let event_id = api
        .send_event(&tenant, json!({ "type": "t", "payload": {} }))
        .await?;
    api.wait_for_event_status(&tenant, &event_id, "delivered")
        .await?;
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        1,
        "the receiver got {} request(s); the proxy got {}",
        requests.len(),
        proxy.count()
    );
    assert_eq!(requests[0].header("webhook-id"), event_id);
    assert_eq!(proxy.count(), 0, "a request went through the proxy");
    Ok(())
}
