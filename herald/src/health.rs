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

impl CheckResult {
    fn from_result(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(error) => Self {
                ok: false,
                error: Some(error),
            },
        }
    }
}

async fn within<F: std::future::Future<Output = Result<(), String>>>(
    check: F,
) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".to_owned()))
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health))
)]
pub async fn healthz(State(stack): State<Stack>) -> (StatusCode, Json<Health>) {
    let nats = async {
        if stack.nats.connection_state() == async_nats::connection::State::Connected {
            stack.nats.flush().await.map_err(|error| error.to_string())
        } else {
            Err("not connected".to_owned())
        }
    };
    let postgres = async {
        sqlx::query("SELECT 1")
            .execute(&stack.pool)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    let clickhouse = async {
        stack
            .clickhouse
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
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
