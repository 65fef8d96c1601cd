//! `GET /healthz`: 200 only when NATS, Postgres and ClickHouse all answer and every service
//! this process runs has started (opened what it reads from the log: a delivery service
//! still waiting for the log to answer at start cannot deliver yet).

use crate::stack::Stack;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `starting` while every store answers but a service has not started yet; or
    /// `unavailable`.
    pub status: &'static str,
    pub nats: CheckResult,
    pub postgres: CheckResult,
    pub clickhouse: CheckResult,
    /// Present when this process runs the delivery service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<ServiceState>,
    /// Present when this process runs the projector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projector: Option<ServiceState>,
}

/// A background service's progress: `starting` until it has opened its streams and
/// consumers of the log (it waits for the log to answer), then `running`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Starting,
    Running,
}

/// Set once by a background service when it has started; read by `/healthz`.
#[derive(Clone, Debug, Default)]
pub struct Started(Arc<AtomicBool>);

impl Started {
    /// What the service calls once it runs.
    pub fn setter(&self) -> impl FnOnce() + Send + 'static {
        let flag = self.0.clone();
        move || flag.store(true, Ordering::Release)
    }

    fn state(&self) -> ServiceState {
        match self.0.load(Ordering::Acquire) {
            true => ServiceState::Running,
            false => ServiceState::Starting,
        }
    }
}

/// What `/healthz` looks at: the stores, and the services this process runs that start.
#[derive(Clone)]
pub struct HealthState {
    pub stack: Stack,
    pub delivery: Option<Started>,
    pub projector: Option<Started>,
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
pub async fn healthz(State(health): State<HealthState>) -> (StatusCode, Json<Health>) {
    let stack = &health.stack;
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
    let stores_answer = nats.is_ok() && postgres.is_ok() && clickhouse.is_ok();
    let delivery = health.delivery.as_ref().map(Started::state);
    let projector = health.projector.as_ref().map(Started::state);
    let (status, word) = verdict(stores_answer, &[delivery, projector]);
    let health = Health {
        status: word,
        nats: CheckResult::from_result(nats),
        postgres: CheckResult::from_result(postgres),
        clickhouse: CheckResult::from_result(clickhouse),
        delivery,
        projector,
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

/// The answer and its `status` word, from whether every store answers and the state of each
/// service (`None`: not run by this process).
fn verdict(stores_answer: bool, services: &[Option<ServiceState>]) -> (StatusCode, &'static str) {
    let started = services
        .iter()
        .flatten()
        .all(|state| *state == ServiceState::Running);
    match (stores_answer, started) {
        (true, true) => (StatusCode::OK, "ok"),
        (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::{Running, Starting};

    #[test]
    fn healthy_only_once_every_store_answers_and_every_service_runs() {
        let ok = (StatusCode::OK, "ok");
        let starting = (StatusCode::SERVICE_UNAVAILABLE, "starting");
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(
            verdict(true, &[None, None]),
            ok,
            "a process without such services"
        );
        assert_eq!(verdict(true, &[Some(Running), Some(Running)]), ok);
        assert_eq!(verdict(true, &[Some(Starting), Some(Running)]), starting);
        assert_eq!(verdict(true, &[None, Some(Starting)]), starting);
        assert_eq!(verdict(false, &[Some(Running), None]), unavailable);
        assert_eq!(verdict(false, &[Some(Starting), None]), unavailable);
    }

    #[test]
    fn a_service_runs_once_it_says_so() {
        let started = Started::default();
        assert_eq!(started.state(), Starting);
        let setter = started.setter();
        assert_eq!(started.clone().state(), Starting);
        setter();
        assert_eq!(started.state(), Running);
    }
}
