//! `GET /healthz`: 200 only when NATS, Postgres and ClickHouse all answer.

use crate::stack::Stack;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub nats: CheckResult,
    pub postgres: CheckResult,
    pub clickhouse: CheckResult,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a store did not answer the health check; shown as `error`.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("not connected")]
    NotConnected,
    #[error("no answer within 2 s")]
    TimedOut,
    #[error(transparent)]
    Nats(#[from] async_nats::client::FlushError),
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    #[error(transparent)]
    ClickHouse(#[from] clickhouse::error::Error),
}

impl CheckResult {
    fn from_result(result: Result<(), CheckError>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(error) => Self {
                ok: false,
                error: Some(error.to_string()),
            },
        }
    }
}

async fn within<F: std::future::Future<Output = Result<(), CheckError>>>(
    check: F,
) -> Result<(), CheckError> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or(Err(CheckError::TimedOut))
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn healthz(State(stack): State<Stack>) -> (StatusCode, Json<Health>) {
    let nats = async {
        if stack.nats.connection_state() == async_nats::connection::State::Connected {
            Ok(stack.nats.flush().await?)
        } else {
            Err(CheckError::NotConnected)
        }
    };
    let postgres = async {
        sqlx::query("SELECT 1").execute(&stack.pool).await?;
        Ok(())
    };
    let clickhouse = async {
        stack.clickhouse.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    };
    let (nats, postgres, clickhouse) =
        tokio::join!(within(nats), within(postgres), within(clickhouse));
    let healthy = nats.is_ok() && postgres.is_ok() && clickhouse.is_ok();
    let health = Health {
        status: if healthy { "ok" } else { "unavailable" },
        nats: CheckResult::from_result(nats),
        postgres: CheckResult::from_result(postgres),
        clickhouse: CheckResult::from_result(clickhouse),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// `GET /metrics`: this process's counters and histograms in the Prometheus text format.
/// Like `/healthz` it needs no credential: it holds totals, no tenant's data.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((
        status = 200,
        description = "Prometheus text format: `herald_http_requests_total`, `herald_events_accepted_total`, `herald_ingest_duration_seconds`, `herald_event_append_duration_seconds`, `herald_delivery_attempts_total`, `herald_attempt_duration_seconds`, `herald_accept_to_delivered_seconds`, `herald_attempts_in_flight`, `herald_log_publish_duration_seconds`, `herald_outbox_backlog`, `herald_retries_waiting`, `herald_breakers_open`, `herald_projection_lag_messages`, `herald_projection_lag_seconds` (docs/operations.md)",
        body = String,
        content_type = "text/plain"
    ))
)]
pub async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        herald_metrics::metrics().render(),
    )
}
