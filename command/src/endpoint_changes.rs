//! `PATCH /v1/webhook_endpoints/{id}` and `DELETE /v1/webhook_endpoints/{id}`.
//!
//! A PATCH sets the fields it names and keeps the others (JSON merge patch, RFC 7396):
//! `null` clears a field that may be absent (`events` → every type, `description`,
//! `rate_limit`, `retry_policy`, `headers`), and in `headers` a `null` value removes that
//! header while other headers are kept. Delivery processes learn of the change from the log
//! at once, and within their endpoint cache time (`HERALD_ENDPOINT_CACHE_TTL_MS`) at the
//! latest.

use crate::endpoint_slo::{validate_slo, SloRequest};
use crate::endpoints::{
    checked_description, checked_header, checked_header_count, checked_url, validate_event_types,
    validate_rate_limit, validate_retry_policy, RateLimitRequest, RetryPolicyRequest,
};
use crate::field_schemas::{CustomHeadersChange, Description, EndpointUrl};
use crate::state::CommandState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use herald_http::field_schemas::EventTypeName;
use herald_http::{ApiError, ApiJson, ApiKeyCaller};
use herald_schemas::{
    EndpointDeleted, EndpointId, EndpointSlo, EndpointUpdated, LogMessage, RateLimit,
    RetryPolicyOverride,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = EndpointUrl, required = false)]
    pub url: Option<Option<String>>,
    /// Event types to deliver; `null` delivers every type.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = Option<Vec<EventTypeName>>, nullable, min_items = 1, max_items = 256)]
    pub events: Option<Option<Vec<String>>>,
    /// `null` or blank removes it.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = Option<Description>, nullable)]
    pub description: Option<Option<String>>,
    /// Enabling an endpoint Herald disabled (its receiver answered 410 Gone) clears
    /// `disabled_reason`.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = bool, required = false)]
    pub enabled: Option<Option<bool>>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(nullable)]
    pub rate_limit: Option<Option<RateLimitRequest>>,
    /// Replaces the endpoint's retry policy as a whole; `null` goes back to the service
    /// default.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(nullable)]
    pub retry_policy: Option<Option<RetryPolicyRequest>>,
    /// Deliveries already waiting keep the lane they are in; new ones follow the new setting.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = bool, required = false)]
    pub ordered: Option<Option<bool>>,
    /// Sets the named headers, removes those given `null`, keeps the others; `null` removes
    /// every custom header.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(value_type = Option<CustomHeadersChange>, nullable)]
    pub headers: Option<Option<BTreeMap<String, Option<String>>>>,
    /// Replaces the delivery objective; `null` removes it.
    #[serde(default, deserialize_with = "herald_http::json_body::present")]
    #[schema(nullable)]
    pub slo: Option<Option<SloRequest>>,
}

/// An endpoint as it is after a change. Secrets and header values are never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointUpdatedResponse {
    pub endpoint_id: uuid::Uuid,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub enabled: bool,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<RateLimit>,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<RetryPolicyOverride>,
    pub ordered: bool,
    pub header_names: Vec<String>,
    pub signature_scheme: String,
    #[schema(value_type = Option<Object>)]
    pub slo: Option<EndpointSlo>,
    /// The fields this request set.
    pub changed: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn endpoint_id_of(text: &str) -> Result<EndpointId, ApiError> {
    text.parse::<EndpointId>()
        .map_err(|_| ApiError::invalid("endpoint_id", "must be a UUID"))
}

fn not_found(endpoint_id: EndpointId) -> ApiError {
    ApiError::NotFound(format!(
        "endpoint {endpoint_id} does not exist for this tenant"
    ))
}

#[utoipa::path(
    patch, path = "/v1/webhook_endpoints/{endpoint_id}", tag = "endpoints",
    params(("endpoint_id" = uuid::Uuid, Path)),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, body = EndpointUpdatedResponse),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn update_endpoint(
    State(state): State<CommandState>,
    caller: ApiKeyCaller,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<UpdateEndpoint>,
) -> Result<Json<EndpointUpdatedResponse>, ApiError> {
    let tenant_id = caller.tenant_id;
    let endpoint_id = endpoint_id_of(&endpoint_id)?;
    // Everything is checked before anything is changed.
    let required = |field: &str| {
        ApiError::invalid(
            field,
            "cannot be null: leave it out to keep the current value",
        )
    };
    let url = match &request.url {
        Some(Some(text)) => Some(checked_url(&state, text).await?),
        Some(None) => return Err(required("url")),
        None => None,
    };
    let enabled = match request.enabled {
        Some(None) => return Err(required("enabled")),
        other => other.flatten(),
    };
    let ordered = match request.ordered {
        Some(None) => return Err(required("ordered")),
        other => other.flatten(),
    };
    let events = match request.events {
        Some(events) => Some(validate_event_types(events)?),
        None => None,
    };
    let description = match request.description {
        Some(text) => Some(checked_description(text)?),
        None => None,
    };
    let rate_limit = match request.rate_limit {
        Some(limit) => Some(validate_rate_limit(limit)?),
        None => None,
    };
    let retry_policy = match request.retry_policy {
        Some(policy) => Some(validate_retry_policy(policy)?),
        None => None,
    };
    let slo = match request.slo {
        Some(slo) => Some(validate_slo(slo)?),
        None => None,
    };
    if let Some(Some(headers)) = &request.headers {
        for (name, value) in headers {
            checked_header(name, value.as_deref())?;
        }
    }

    let mut transaction = state.pool.begin().await?;
    let mut locked =
        herald_store::endpoints::lock_for_change(&mut transaction, tenant_id, endpoint_id)
            .await?
            .ok_or_else(|| not_found(endpoint_id))?;
    let endpoint = &mut locked.snapshot;
    let mut changed = Vec::new();
    let mut set = |field: &str| changed.push(field.to_owned());
    if let Some(url) = url {
        endpoint.url = url;
        set("url");
    }
    if let Some(events) = events {
        endpoint.event_types = events;
        set("events");
    }
    if let Some(description) = description {
        endpoint.description = description;
        set("description");
    }
    if let Some(enabled) = enabled {
        endpoint.enabled = enabled;
        set("enabled");
    }
    if let Some(rate_limit) = rate_limit {
        endpoint.rate_limit = rate_limit;
        set("rate_limit");
    }
    if let Some(retry_policy) = retry_policy {
        endpoint.retry_policy = retry_policy;
        set("retry_policy");
    }
    if let Some(ordered) = ordered {
        endpoint.ordered = ordered;
        set("ordered");
    }
    if let Some(slo) = slo {
        endpoint.slo = slo;
        set("slo");
    }
    if let Some(headers) = request.headers {
        match headers {
            None => locked.headers = Default::default(),
            Some(headers) => {
                for (name, value) in headers {
                    match value {
                        Some(value) => locked.headers.set(&state.vault, endpoint_id, &name, &value),
                        None => locked.headers.remove(&name),
                    }
                }
            }
        }
        checked_header_count(locked.headers.len())?;
        endpoint.header_names = locked.headers.names();
        set("headers");
    }
    endpoint.updated_at = Utc::now();
    let endpoint = endpoint.clone();
    herald_store::endpoints::update(&mut transaction, &endpoint, &locked.headers).await?;
    let message = LogMessage::EndpointUpdated(EndpointUpdated {
        endpoint: endpoint.clone(),
        changed: changed.clone(),
        actor: caller.actor(),
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.routing.invalidate(tenant_id);
    tracing::info!(%tenant_id, %endpoint_id, ?changed, "endpoint updated");
    state.outbox.send(staged).await;
    Ok(Json(EndpointUpdatedResponse {
        endpoint_id: endpoint_id.as_uuid(),
        url: endpoint.url,
        events: endpoint.event_types,
        enabled: endpoint.enabled,
        description: endpoint.description,
        rate_limit: endpoint.rate_limit,
        retry_policy: endpoint.retry_policy,
        ordered: endpoint.ordered,
        header_names: endpoint.header_names,
        signature_scheme: endpoint.signature_scheme.as_str().to_owned(),
        slo: endpoint.slo,
        changed,
        created_at: endpoint.created_at,
        updated_at: endpoint.updated_at,
    }))
}

#[utoipa::path(
    delete, path = "/v1/webhook_endpoints/{endpoint_id}", tag = "endpoints",
    params(("endpoint_id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Deleted: nothing more is delivered to it; deliveries still pending end at their next due time as failed (`endpoint_unavailable`, \"the endpoint was deleted\")"),
        (status = 404, body = herald_http::ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_endpoint(
    State(state): State<CommandState>,
    caller: ApiKeyCaller,
    Path(endpoint_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant_id = caller.tenant_id;
    let endpoint_id = endpoint_id_of(&endpoint_id)?;
    let mut transaction = state.pool.begin().await?;
    if !herald_store::endpoints::delete(&mut transaction, tenant_id, endpoint_id).await? {
        return Err(not_found(endpoint_id));
    }
    let message = LogMessage::EndpointDeleted(EndpointDeleted {
        endpoint_id,
        tenant_id,
        deleted_at: Utc::now(),
        actor: caller.actor(),
    });
    let staged = crate::stage_config_change(&mut transaction, &state, tenant_id, &message).await?;
    transaction.commit().await?;
    state.routing.invalidate(tenant_id);
    tracing::info!(%tenant_id, %endpoint_id, "endpoint deleted");
    state.outbox.send(staged).await;
    Ok(StatusCode::NO_CONTENT)
}
