//! `POST /v1/webhook_endpoints`: a tenant subscribes a receiver URL.

use crate::field_schemas::{Description, EndpointUrl, SigningSecretText};
use crate::state::CommandState;
use crate::validation;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::EventTypeName;
use herald_http::{ApiError, ApiJson, AuthenticatedTenant};
use herald_rules::SigningSecret;
use herald_schemas::{
    EndpointCreated, EndpointId, EndpointSecretRotated, EndpointSnapshot, LogMessage, RateLimit,
    RetryPolicyOverride,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    #[schema(value_type = EndpointUrl)]
    pub url: String,
    /// Event types to deliver; absent delivers every type.
    #[schema(value_type = Option<Vec<EventTypeName>>, min_items = 1, max_items = 256)]
    pub events: Option<Vec<String>>,
    /// A `whsec_<base64>` secret (24-64 bytes); generated when absent.
    #[schema(value_type = Option<SigningSecretText>)]
    pub secret: Option<String>,
    /// Defaults to true.
    pub enabled: Option<bool>,
    /// Blank counts as none.
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// Space deliveries to this endpoint: `{"per_second": 10, "burst": 20}` (burst defaults to
    /// `per_second`). Excess deliveries wait; they do not fail.
    pub rate_limit: Option<RateLimitRequest>,
    /// This endpoint's own retry policy; settings left out keep the service default.
    pub retry_policy: Option<RetryPolicyRequest>,
    /// Deliver one event at a time, in the order events were accepted; a delivery being
    /// retried holds back the ones after it. Defaults to false (full concurrency).
    pub ordered: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyRequest {
    /// Attempts in all, the first one included.
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1, maximum = 50)]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, before jitter: 100 ms to 1 day.
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 100, maximum = 86_400_000)]
    pub initial_delay_ms: Option<u64>,
    /// Growth of each further delay.
    #[schema(minimum = 1, maximum = 10)]
    pub multiplier: Option<f64>,
    /// Longest delay between attempts: 100 ms to 7 days. One shorter than
    /// `initial_delay_ms` is taken as `initial_delay_ms`.
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 100, maximum = 604_800_000)]
    pub max_delay_ms: Option<u64>,
    /// How long after acceptance an event may still be attempted: 1 s to 7 days.
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1000, maximum = 604_800_000)]
    pub deadline_ms: Option<u64>,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

fn validate_retry_policy(
    request: Option<RetryPolicyRequest>,
) -> Result<Option<RetryPolicyOverride>, ApiError> {
    let Some(request) = request else {
        return Ok(None);
    };
    fn within<T: PartialOrd + std::fmt::Display + Copy>(
        field: &str,
        value: Option<T>,
        low: T,
        high: T,
        unit: &str,
    ) -> Result<Option<T>, ApiError> {
        match value {
            Some(value) if !(value >= low && value <= high) => Err(ApiError::invalid(
                format!("retry_policy.{field}"),
                format!("must be {low}-{high}{unit}"),
            )),
            _ => Ok(value),
        }
    }
    let policy = RetryPolicyOverride {
        max_attempts: within("max_attempts", request.max_attempts, 1, 50, "")?,
        initial_delay_ms: within(
            "initial_delay_ms",
            request.initial_delay_ms,
            100,
            DAY_MS,
            " milliseconds",
        )?,
        multiplier: within("multiplier", request.multiplier, 1.0, 10.0, "")?,
        max_delay_ms: within(
            "max_delay_ms",
            request.max_delay_ms,
            100,
            7 * DAY_MS,
            " milliseconds",
        )?,
        deadline_ms: within(
            "deadline_ms",
            request.deadline_ms,
            1_000,
            7 * DAY_MS,
            " milliseconds",
        )?,
    };
    Ok((policy != RetryPolicyOverride::default()).then_some(policy))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRequest {
    #[serde(deserialize_with = "herald_http::whole_number::required")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub per_second: u32,
    /// Defaults to `per_second`.
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub burst: Option<u32>,
}

const MAX_RATE: u32 = 10_000;

fn validate_rate_limit(request: Option<RateLimitRequest>) -> Result<Option<RateLimit>, ApiError> {
    let Some(request) = request else {
        return Ok(None);
    };
    if !(1..=MAX_RATE).contains(&request.per_second) {
        return Err(ApiError::invalid(
            "rate_limit.per_second",
            format!("must be 1-{MAX_RATE}"),
        ));
    }
    let burst = request.burst.unwrap_or(request.per_second);
    if !(1..=MAX_RATE).contains(&burst) {
        return Err(ApiError::invalid(
            "rate_limit.burst",
            format!("must be 1-{MAX_RATE}"),
        ));
    }
    Ok(Some(RateLimit {
        per_second: request.per_second,
        burst,
    }))
}

/// An endpoint as created; the secret is shown here so the receiver can verify signatures.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreatedResponse {
    pub endpoint_id: uuid::Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub secret: String,
    pub enabled: bool,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<RateLimit>,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<RetryPolicyOverride>,
    pub ordered: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[utoipa::path(
    post, path = "/v1/webhook_endpoints", tag = "endpoints",
    request_body = CreateEndpoint,
    responses(
        (status = 201, body = EndpointCreatedResponse),
        (status = 400, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_endpoint(
    State(state): State<CommandState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    ApiJson(request): ApiJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<EndpointCreatedResponse>), ApiError> {
    let url = validation::endpoint_url(&request.url, &state.target_guard)
        .await
        .map_err(|error| ApiError::invalid("url", error.to_string()))?;
    let event_types = validate_event_types(request.events)?;
    let secret = match request.secret.as_deref() {
        Some(text) => SigningSecret::parse(text)
            .map_err(|error| ApiError::invalid("secret", error.to_string()))?,
        None => SigningSecret::generate(),
    };
    let rate_limit = validate_rate_limit(request.rate_limit)?;
    let retry_policy = validate_retry_policy(request.retry_policy)?;
    let description = request.description.filter(|text| !text.trim().is_empty());
    if let Some(text) = &description {
        validation::free_text(text, validation::MAX_DESCRIPTION_LENGTH)
            .map_err(|error| ApiError::invalid("description", error.to_string()))?;
    }
    let snapshot = EndpointSnapshot {
        endpoint_id: EndpointId::generate(),
        tenant_id,
        url: url.to_string(),
        event_types,
        enabled: request.enabled.unwrap_or(true),
        description,
        rate_limit,
        retry_policy,
        ordered: request.ordered.unwrap_or(false),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let mut transaction = state.pool.begin().await?;
    herald_store::endpoints::insert(&mut transaction, &snapshot, &secret.expose()).await?;
    let message = LogMessage::EndpointCreated(EndpointCreated {
        endpoint: snapshot.clone(),
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.routing.invalidate(tenant_id);
    tracing::info!(%tenant_id, endpoint_id = %snapshot.endpoint_id, "endpoint created");
    let response = EndpointCreatedResponse {
        endpoint_id: snapshot.endpoint_id.as_uuid(),
        url: snapshot.url.clone(),
        events: snapshot.event_types.clone(),
        secret: secret.expose(),
        enabled: snapshot.enabled,
        description: snapshot.description.clone(),
        rate_limit,
        retry_policy,
        ordered: snapshot.ordered,
        created_at: snapshot.created_at,
        updated_at: snapshot.updated_at,
    };
    state.outbox.send(staged).await;
    Ok((StatusCode::CREATED, Json(response)))
}

fn validate_event_types(events: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(mut events) = events else {
        return Ok(None);
    };
    if events.is_empty() || events.len() > validation::MAX_EVENT_TYPES_PER_ENDPOINT {
        return Err(ApiError::invalid(
            "events",
            format!(
                "must list 1-{} event types, or be left out to receive every type",
                validation::MAX_EVENT_TYPES_PER_ENDPOINT
            ),
        ));
    }
    for (index, event_type) in events.iter().enumerate() {
        validation::event_type(event_type)
            .map_err(|error| ApiError::invalid(format!("events[{index}]"), error.to_string()))?;
    }
    events.sort();
    events.dedup();
    Ok(Some(events))
}

/// How long the previous secret stays valid after a rotation unless the request says otherwise.
const DEFAULT_GRACE_SECONDS: u32 = 24 * 3600;
const MAX_GRACE_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new `whsec_…` secret; generated when absent.
    #[schema(value_type = Option<SigningSecretText>)]
    pub secret: Option<String>,
    /// How long deliveries stay signed with the previous secret too (default 86400).
    #[serde(default, deserialize_with = "herald_http::whole_number::optional")]
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_period_seconds: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretRotated {
    pub endpoint_id: uuid::Uuid,
    /// The new secret.
    pub secret: String,
    /// Until then deliveries carry signatures by both the new and the previous secret.
    pub previous_secret_expires_at: DateTime<Utc>,
}

#[utoipa::path(
    post, path = "/v1/webhook_endpoints/{endpoint_id}/secret/rotate", tag = "endpoints",
    params(("endpoint_id" = uuid::Uuid, Path)),
    request_body(content = Option<RotateSecret>, description = "Optional; `{}` or no body generates a secret"),
    responses(
        (status = 200, body = SecretRotated),
        (status = 401, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
        (status = 422, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<CommandState>,
    AuthenticatedTenant(tenant_id): AuthenticatedTenant,
    Path(endpoint_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SecretRotated>, ApiError> {
    let endpoint_id = endpoint_id
        .parse::<EndpointId>()
        .map_err(|_| ApiError::invalid("endpoint_id", "must be a UUID"))?;
    let request: RotateSecret = herald_http::json_body::parse_optional(&body)?;
    let secret = match request.secret.as_deref() {
        Some(text) => SigningSecret::parse(text)
            .map_err(|error| ApiError::invalid("secret", error.to_string()))?,
        None => SigningSecret::generate(),
    };
    let grace = request
        .grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "grace_period_seconds",
            format!("must be at most {MAX_GRACE_SECONDS} (7 days)"),
        ));
    }
    let rotated_at = Utc::now();
    let previous_secret_expires_at = rotated_at + chrono::Duration::seconds(i64::from(grace));
    let mut transaction = state.pool.begin().await?;
    let rotated = herald_store::endpoints::rotate_secret(
        &mut transaction,
        tenant_id,
        endpoint_id,
        &secret.expose(),
        rotated_at,
        previous_secret_expires_at,
    )
    .await?;
    if !rotated {
        return Err(ApiError::NotFound(format!(
            "endpoint {endpoint_id} does not exist for this tenant"
        )));
    }
    let message = LogMessage::EndpointSecretRotated(EndpointSecretRotated {
        endpoint_id,
        tenant_id,
        rotated_at,
        previous_secret_expires_at,
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    tracing::info!(%tenant_id, %endpoint_id, grace_seconds = grace, "endpoint secret rotated");
    state.outbox.send(staged).await;
    Ok(Json(SecretRotated {
        endpoint_id: endpoint_id.as_uuid(),
        secret: secret.expose(),
        previous_secret_expires_at,
    }))
}
