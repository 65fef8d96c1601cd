//! `POST /v1/webhook_endpoints`: a tenant subscribes a receiver URL; and the rotation of its
//! signing secret. Changing and deleting one: [`crate::endpoint_changes`].

use crate::endpoint_headers;
use crate::endpoint_slo::{validate_slo, SloRequest};
use crate::field_schemas::{
    CustomHeaders, Description, EndpointUrl, SignatureSchemeName, SigningSecretText,
};
use crate::state::CommandState;
use crate::validation;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::EventTypeName;
use herald_http::{ApiError, ApiJson, ApiKeyCaller};
use herald_rules::{Ed25519SigningKey, SigningSecret};
use herald_schemas::{
    EndpointCreated, EndpointId, EndpointSecretRotated, EndpointSlo, EndpointSnapshot, LogMessage,
    OperationalEvent, RateLimit, RetryPolicyOverride, SignatureScheme,
};
use herald_store::endpoints::{SealedHeaders, SigningMaterial};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// Static headers sent with every delivery, e.g. `{"Authorization": "Bearer …"}`. Values
    /// are stored encrypted and never shown again; answers list only the names.
    #[schema(value_type = Option<CustomHeaders>)]
    pub headers: Option<BTreeMap<String, String>>,
    /// `v1` (default): HMAC-SHA256 with a `whsec_` secret the receiver holds too. `v1a`:
    /// ed25519; Herald keeps the private key and the receiver verifies with `public_key`.
    #[schema(value_type = Option<SignatureSchemeName>)]
    pub signature_scheme: Option<String>,
    /// A delivery objective, e.g. `{"success_rate": 0.99, "window_days": 30}`: Herald shows
    /// the error budget left and announces `herald.endpoint.slo_burn` when it burns fast.
    pub slo: Option<SloRequest>,
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

pub(crate) fn validate_retry_policy(
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

pub(crate) fn validate_rate_limit(
    request: Option<RateLimitRequest>,
) -> Result<Option<RateLimit>, ApiError> {
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

/// An endpoint as created; a `v1` secret is shown here (and on rotation) only, so the
/// receiver can verify signatures.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreatedResponse {
    pub endpoint_id: uuid::Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    /// The `whsec_` secret of a `v1` endpoint; absent for `v1a`.
    pub secret: Option<String>,
    /// `v1` or `v1a`.
    pub signature_scheme: String,
    /// The `whpk_` key that verifies a `v1a` endpoint's signatures.
    pub public_key: Option<String>,
    /// Names of the custom headers; their values are never shown.
    pub header_names: Vec<String>,
    pub enabled: bool,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<RateLimit>,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<RetryPolicyOverride>,
    pub ordered: bool,
    #[schema(value_type = Option<Object>)]
    pub slo: Option<EndpointSlo>,
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
    caller: ApiKeyCaller,
    ApiJson(request): ApiJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<EndpointCreatedResponse>), ApiError> {
    let tenant_id = caller.tenant_id;
    let url = checked_url(&state, &request.url).await?;
    let event_types = validate_event_types(request.events)?;
    let scheme = match request.signature_scheme.as_deref() {
        None => SignatureScheme::HmacSha256,
        Some(text) => SignatureScheme::parse(text)
            .ok_or_else(|| ApiError::invalid("signature_scheme", "must be `v1` or `v1a`"))?,
    };
    let signing = NewSigning::for_scheme(scheme, request.secret.as_deref())?;
    let rate_limit = validate_rate_limit(request.rate_limit)?;
    let retry_policy = validate_retry_policy(request.retry_policy)?;
    let slo = validate_slo(request.slo)?;
    let description = checked_description(request.description)?;
    let endpoint_id = EndpointId::generate();
    let mut headers = SealedHeaders::default();
    for (name, value) in request.headers.unwrap_or_default() {
        checked_header(&name, Some(&value))?;
        headers.set(&state.vault, endpoint_id, &name, &value);
    }
    checked_header_count(headers.len())?;
    let now = Utc::now();
    let snapshot = EndpointSnapshot {
        endpoint_id,
        tenant_id,
        url,
        event_types,
        enabled: request.enabled.unwrap_or(true),
        description,
        rate_limit,
        retry_policy,
        ordered: request.ordered.unwrap_or(false),
        header_names: headers.names(),
        signature_scheme: scheme,
        slo,
        created_at: now,
        updated_at: now,
    };
    let mut transaction = state.pool.begin().await?;
    herald_store::endpoints::insert(
        &mut transaction,
        &state.vault,
        &snapshot,
        signing.material().as_material(),
        &headers,
    )
    .await?;
    let message = LogMessage::EndpointCreated(EndpointCreated {
        endpoint: snapshot.clone(),
        actor: caller.actor(),
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.routing.invalidate(tenant_id);
    tracing::info!(%tenant_id, endpoint_id = %snapshot.endpoint_id, "endpoint created");
    let response = EndpointCreatedResponse {
        endpoint_id: snapshot.endpoint_id.as_uuid(),
        url: snapshot.url.clone(),
        events: snapshot.event_types.clone(),
        secret: signing.shown_secret(),
        signature_scheme: scheme.as_str().to_owned(),
        public_key: signing.public_key(),
        header_names: snapshot.header_names.clone(),
        enabled: snapshot.enabled,
        description: snapshot.description.clone(),
        rate_limit,
        retry_policy,
        ordered: snapshot.ordered,
        slo,
        created_at: snapshot.created_at,
        updated_at: snapshot.updated_at,
    };
    state.outbox.send(staged).await;
    Ok((StatusCode::CREATED, Json(response)))
}

/// A new signing secret or key pair, before it is sealed.
enum NewSigning {
    Hmac(SigningSecret),
    Ed25519(Ed25519SigningKey),
}

/// The texts [`herald_store::endpoints::SigningMaterial`] borrows.
struct OwnedMaterial {
    secret: String,
    public_key: Option<String>,
}

impl OwnedMaterial {
    fn as_material(&self) -> SigningMaterial<'_> {
        SigningMaterial {
            secret: &self.secret,
            public_key: self.public_key.as_deref(),
        }
    }
}

impl NewSigning {
    /// The given `v1` secret, or new material for `scheme`; a `v1a` key pair is always
    /// Herald's to make.
    fn for_scheme(scheme: SignatureScheme, secret: Option<&str>) -> Result<Self, ApiError> {
        match (scheme, secret) {
            (SignatureScheme::HmacSha256, Some(text)) => {
                Ok(Self::Hmac(SigningSecret::parse(text).map_err(|error| {
                    ApiError::invalid("secret", error.to_string())
                })?))
            }
            (SignatureScheme::HmacSha256, None) => Ok(Self::Hmac(SigningSecret::generate())),
            (SignatureScheme::Ed25519, None) => Ok(Self::Ed25519(Ed25519SigningKey::generate())),
            (SignatureScheme::Ed25519, Some(_)) => Err(ApiError::invalid(
                "secret",
                "a `v1a` (ed25519) endpoint's key pair is made by Herald; leave `secret` out",
            )),
        }
    }

    fn material(&self) -> OwnedMaterial {
        match self {
            Self::Hmac(secret) => OwnedMaterial {
                secret: secret.expose(),
                public_key: None,
            },
            Self::Ed25519(key) => OwnedMaterial {
                secret: key.expose(),
                public_key: Some(key.public_key()),
            },
        }
    }

    /// What the tenant is shown: an HMAC secret (it must hold it to verify); never a
    /// private key.
    fn shown_secret(&self) -> Option<String> {
        match self {
            Self::Hmac(secret) => Some(secret.expose()),
            Self::Ed25519(_) => None,
        }
    }

    fn public_key(&self) -> Option<String> {
        match self {
            Self::Hmac(_) => None,
            Self::Ed25519(key) => Some(key.public_key()),
        }
    }
}

/// An endpoint URL that passes the SSRF guard and, with `HERALD_REQUIRE_HTTPS`, is `https`.
pub(crate) async fn checked_url(state: &CommandState, text: &str) -> Result<String, ApiError> {
    let url = validation::endpoint_url(text, &state.target_guard)
        .await
        .map_err(|error| ApiError::invalid("url", error.to_string()))?;
    if state.require_https && url.scheme() != "https" {
        return Err(ApiError::invalid(
            "url",
            "must be an https:// URL: this Herald refuses plain http (HERALD_REQUIRE_HTTPS)",
        ));
    }
    Ok(url.to_string())
}

/// A description to store: blank counts as none.
pub(crate) fn checked_description(text: Option<String>) -> Result<Option<String>, ApiError> {
    let description = text.filter(|text| !text.trim().is_empty());
    if let Some(text) = &description {
        validation::free_text(text, validation::MAX_DESCRIPTION_LENGTH)
            .map_err(|error| ApiError::invalid("description", error.to_string()))?;
    }
    Ok(description)
}

/// A custom header to set (`value` given) or remove.
pub(crate) fn checked_header(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    endpoint_headers::check_name(name)
        .map_err(|error| ApiError::invalid(format!("headers.{name}"), error.to_string()))?;
    if let Some(value) = value {
        endpoint_headers::check_value(value)
            .map_err(|error| ApiError::invalid(format!("headers.{name}"), error.to_string()))?;
    }
    Ok(())
}

pub(crate) fn checked_header_count(count: usize) -> Result<(), ApiError> {
    if count > endpoint_headers::MAX_HEADERS {
        return Err(ApiError::invalid(
            "headers",
            endpoint_headers::InvalidHeader::TooMany.to_string(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_event_types(
    events: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ApiError> {
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
        if herald_schemas::operational::is_operational(event_type)
            && !OperationalEvent::TYPE_NAMES.contains(&event_type.as_str())
        {
            return Err(ApiError::invalid(
                format!("events[{index}]"),
                format!(
                    "Herald emits no `{event_type}`; its own event types are {}",
                    OperationalEvent::TYPE_NAMES.join(", ")
                ),
            ));
        }
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
    /// The new `whsec_…` secret of a `v1` endpoint; generated when absent. A `v1a` endpoint
    /// always gets a new key pair from Herald.
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
    /// The new `whsec_` secret of a `v1` endpoint.
    pub secret: Option<String>,
    /// The new `whpk_` public key of a `v1a` endpoint.
    pub public_key: Option<String>,
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
    caller: ApiKeyCaller,
    Path(endpoint_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<SecretRotated>, ApiError> {
    let tenant_id = caller.tenant_id;
    let endpoint_id = endpoint_id
        .parse::<EndpointId>()
        .map_err(|_| ApiError::invalid("endpoint_id", "must be a UUID"))?;
    let request: RotateSecret = herald_http::json_body::parse_optional(&body)?;
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
    let not_found = || {
        ApiError::NotFound(format!(
            "endpoint {endpoint_id} does not exist for this tenant"
        ))
    };
    let scheme =
        herald_store::endpoints::signature_scheme(&mut transaction, tenant_id, endpoint_id)
            .await?
            .ok_or_else(not_found)?;
    let signing = NewSigning::for_scheme(scheme, request.secret.as_deref())?;
    let rotated = herald_store::endpoints::rotate_secret(
        &mut transaction,
        &state.vault,
        tenant_id,
        endpoint_id,
        signing.material().as_material(),
        rotated_at,
        previous_secret_expires_at,
    )
    .await?;
    if !rotated {
        return Err(not_found());
    }
    let message = LogMessage::EndpointSecretRotated(EndpointSecretRotated {
        endpoint_id,
        tenant_id,
        rotated_at,
        previous_secret_expires_at,
        actor: caller.actor(),
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    tracing::info!(%tenant_id, %endpoint_id, grace_seconds = grace, "endpoint secret rotated");
    state.outbox.send(staged).await;
    Ok(Json(SecretRotated {
        endpoint_id: endpoint_id.as_uuid(),
        secret: signing.shown_secret(),
        public_key: signing.public_key(),
        previous_secret_expires_at,
    }))
}
