//! Sends one signed webhook request and reports what happened. Connections are kept alive
//! and reused per host; redirects are never followed; every address connected to has passed
//! the SSRF guard after DNS resolution.

use crate::classify::{
    classify_status, classify_transport_error, parse_retry_after, ResolveFailed,
};
use crate::retry_policy::AttemptResult;
use crate::signature::WebhookSigner;
use crate::target_guard::TargetGuard;
use chrono::{DateTime, Utc};
use herald_http::trace_context::traceparent_header;
use herald_schemas::{ErrorClass, EventId};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long each phase of a request may take: connecting, then waiting for the receiver
/// between reads (so also for its first byte), then the whole exchange.
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

/// What one request produced.
#[derive(Debug)]
pub struct SendReport {
    pub result: AttemptResult,
    pub http_status: Option<u16>,
    pub error_message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub latency: Duration,
    /// SHA-256 (hex) of the response body's first 64 KiB, when there was a response.
    pub response_body_hash: Option<String>,
    /// Bytes of the request body, when the receiver answered (usage metering counts what
    /// surely reached a receiver).
    pub request_bytes: u32,
    /// Bytes of the response body read (at most 64 KiB).
    pub response_bytes: u32,
}

impl SendReport {
    /// A delivery ended without a request (expired, endpoint gone, deadline passed while
    /// held back): a final failure of `class`, taking no time.
    pub fn not_sent(class: ErrorClass, message: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            result: AttemptResult::Final { class },
            http_status: None,
            error_message: Some(message.into()),
            started_at: now,
            finished_at: now,
            latency: Duration::ZERO,
            response_body_hash: None,
            request_bytes: 0,
            response_bytes: 0,
        }
    }
}

/// The message a receiver gets.
pub struct Webhook<'a> {
    pub url: &'a str,
    pub event_id: EventId,
    pub event_type: &'a str,
    pub payload: &'a RawValue,
    pub trace_id: &'a str,
    /// The span the receiver's work belongs under: the attempt's (the `traceparent` parent).
    pub parent_span_id: u64,
    /// Each signs the message; receivers accept any one of the signatures.
    pub signers: &'a [WebhookSigner],
    /// The endpoint's custom headers; Herald's own headers win over them.
    pub headers: &'a [(String, String)],
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a RawValue,
}

#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    guard: Arc<TargetGuard>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

impl HttpSender {
    pub fn new(
        guard: TargetGuard,
        timeouts: &Timeouts,
        pool_per_host: usize,
    ) -> Result<Self, ClientBuildError> {
        // reqwest is built without a bundled crypto provider; use ring, which is already in the
        // tree for NATS. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            // reqwest otherwise honours HTTP_PROXY, HTTPS_PROXY and ALL_PROXY from the
            // environment. Through a proxy the guard would never see the receiver's address:
            // the proxy resolves the receiver's host, and a proxy named by IP is not resolved.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.first_byte)
            .timeout(timeouts.total)
            .pool_max_idle_per_host(pool_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .build()?;
        Ok(Self { client, guard })
    }

    pub async fn send(&self, webhook: &Webhook<'_>) -> SendReport {
        let started_at = Utc::now();
        let started = Instant::now();
        let outcome = self.exchange(webhook, started_at).await;
        let latency = started.elapsed();
        let (result, http_status, error_message, response) = match outcome {
            Ok(answer) => {
                let result = classify_status(answer.status, answer.retry_after);
                let message = (!matches!(result, AttemptResult::Succeeded))
                    .then(|| format!("receiver answered {}", answer.status));
                (result, Some(answer.status), message, Some(answer))
            }
            Err((result, message)) => (result, None, Some(message), None),
        };
        let (request_bytes, response_bytes) = response
            .as_ref()
            .map_or((0, 0), |answer| (answer.request_bytes, answer.body.bytes));
        SendReport {
            result,
            http_status,
            error_message,
            started_at,
            finished_at: Utc::now(),
            latency,
            response_body_hash: response.map(|answer| answer.body.hash),
            request_bytes,
            response_bytes,
        }
    }

    async fn exchange(
        &self,
        webhook: &Webhook<'_>,
        started_at: DateTime<Utc>,
    ) -> Result<Answer, (AttemptResult, String)> {
        let url = reqwest::Url::parse(webhook.url).map_err(|error| {
            (
                AttemptResult::Final {
                    class: ErrorClass::Connection,
                },
                format!("endpoint URL is invalid: {error}"),
            )
        })?;
        self.check_literal_host(&url)?;
        let timestamp = started_at.timestamp();
        let body = serde_json::to_vec(&WebhookBody {
            event_type: webhook.event_type,
            timestamp: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: webhook.payload,
        })
        .unwrap_or_default();
        let request_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let webhook_id = webhook.event_id.to_string();
        let signature = webhook
            .signers
            .iter()
            .map(|signer| signer.sign(&webhook_id, timestamp, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let mut headers = HeaderMap::with_capacity(7 + webhook.headers.len());
        for (name, value) in webhook.headers {
            // Validated when they were set; a header that no longer parses is left out.
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("Herald/", env!("CARGO_PKG_VERSION"))),
        );
        insert(&mut headers, "webhook-id", &webhook_id);
        insert(&mut headers, "webhook-timestamp", &timestamp.to_string());
        insert(&mut headers, "webhook-signature", &signature);
        insert(
            &mut headers,
            "traceparent",
            &traceparent_header(webhook.trace_id, webhook.parent_span_id),
        );

        let response = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|error| classify_transport_error(&error))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let body = read_and_hash(response).await;
        Ok(Answer {
            status,
            retry_after,
            body,
            request_bytes,
        })
    }

    /// reqwest skips the resolver for IP-literal hosts, so those are checked here.
    fn check_literal_host(&self, url: &reqwest::Url) -> Result<(), (AttemptResult, String)> {
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.guard.check(address).map_err(|refused| {
            (
                AttemptResult::Final {
                    class: ErrorClass::TargetRefused,
                },
                refused.to_string(),
            )
        })
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// What a receiver answered.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: ResponseBody,
    request_bytes: u32,
}

/// What is kept of a response body: its hash and how much of it was read.
struct ResponseBody {
    hash: String,
    bytes: u32,
}

/// Reads at most 64 KiB of the response body and returns its SHA-256; the body itself is not
/// kept. Reading lets the connection go back to the pool; a receiver that sends more than the
/// limit loses its connection instead.
async fn read_and_hash(mut response: reqwest::Response) -> ResponseBody {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut read = 0usize;
    while let Ok(Some(chunk)) = response.chunk().await {
        let take = chunk.len().min(RESPONSE_BODY_LIMIT - read);
        hasher.update(&chunk[..take]);
        read += take;
        if read >= RESPONSE_BODY_LIMIT {
            break;
        }
    }
    ResponseBody {
        hash: hex(&hasher.finalize()),
        bytes: u32::try_from(read).unwrap_or(u32::MAX),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

struct GuardedResolver {
    guard: Arc<TargetGuard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|error| ResolveFailed {
                    host: host.clone(),
                    reason: error.to_string(),
                })?;
            let mut admitted = Vec::new();
            let mut refusal = None;
            for address in resolved {
                match guard.check(address.ip()) {
                    Ok(()) => admitted.push(address),
                    Err(refused) => refusal = Some(refused),
                }
            }
            if admitted.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match refusal {
                    Some(refused) => Box::new(refused),
                    None => Box::new(ResolveFailed {
                        host,
                        reason: "no addresses".to_owned(),
                    }),
                };
                return Err(error);
            }
            let addresses: Addrs = Box::new(admitted.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn sender(guard: TargetGuard) -> HttpSender {
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            total: Duration::from_secs(2),
        };
        HttpSender::new(guard, &timeouts, 1).expect("client")
    }

    async fn send(sender: &HttpSender, url: &str) -> SendReport {
        let payload = RawValue::from_string("{}".to_owned()).expect("json");
        sender
            .send(&Webhook {
                url,
                event_id: EventId::generate(),
                event_type: "t",
                payload: &payload,
                trace_id: "0af7651916cd43dd8448eb211c80319c",
                parent_span_id: 0x00f0_67aa_0ba9_02b7,
                signers: &[WebhookSigner::Hmac(
                    crate::signature::SigningSecret::generate(),
                )],
                headers: &[],
            })
            .await
    }

    /// A loopback port that counts the connections made to it and drops each at once.
    async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(connection);
            }
        });
        (port, connections)
    }

    #[tokio::test]
    async fn ip_literal_hosts_are_refused_without_connecting() {
        let (port, connections) = counting_listener().await;
        let strict = sender(TargetGuard::default());
        // The URL parser turns the decimal, hexadecimal and short forms into 127.0.0.1 too.
        for host in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "127.1",
            "[::ffff:127.0.0.1]",
            "[::127.0.0.1]",
            "[64:ff9b::7f00:1]",
            "[2002:7f00:1::]",
            "[::1]",
        ] {
            let report = send(&strict, &format!("http://{host}:{port}/hook")).await;
            assert_eq!(
                report.result,
                AttemptResult::Final {
                    class: ErrorClass::TargetRefused
                },
                "{host}: {:?}",
                report.error_message
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);

        // The port is reachable once the guard admits it, so the count above means something.
        let loopback = sender(TargetGuard::from_list("127.0.0.0/8").expect("cidr"));
        let report = send(&loopback, &format!("http://127.0.0.1:{port}/hook")).await;
        assert_ne!(
            report.result,
            AttemptResult::Final {
                class: ErrorClass::TargetRefused
            }
        );
        assert!(connections.load(Ordering::SeqCst) >= 1);
    }
}
