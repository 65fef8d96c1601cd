//! The OpenAPI document for every route of every service, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Webhook delivery: submit events, Herald delivers them signed, retried and recorded.",
    ),
    paths(crate::health::healthz, crate::health::metrics),
    modifiers(&BearerSchemes)
)]
struct OperationsApi;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme("api_key", bearer("A tenant API key (`hk_…`)"));
        components.add_security_scheme(
            "portal_session",
            bearer("A portal session token (`hps_…`, from `POST /v1/portal_sessions`): reads, and replays unless read-only"),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("The operator token HERALD_ADMIN_TOKEN"),
        );
    }
}

/// The document as served: the routes, and under `webhooks` what receivers get.
pub fn document() -> serde_json::Value {
    let mut routes = OperationsApi::openapi();
    routes.merge(herald_command::CommandApi::openapi());
    routes.merge(herald_query::QueryApi::openapi());
    document_itself(&mut routes);
    document_problem_answers(&mut routes);
    let mut document = serde_json::to_value(&routes).unwrap_or_default();
    crate::receiver_contract::add_to(&mut document);
    document
}

/// `GET /openapi.json`, served by every service, is part of the API too.
fn document_itself(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder};
    let operation = OperationBuilder::new()
        .tag("operations")
        .summary(Some("This OpenAPI document"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI 3.1 document of every route of every service")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new()))
                        .build(),
                ),
        )
        .build();
    document
        .paths
        .add_path_operation("/openapi.json", vec![HttpMethod::Get], operation);
}

/// The problem answers every route gives the same way, documented on every operation they
/// apply to rather than hoped for in each handler's annotations: 401 where a credential is
/// required; 422 (a field that does not fit, named) where there are parameters or a body;
/// 400 (not JSON) and 413 (over the body limit) where there is a body.
fn document_problem_answers(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemDetails")))
                    .build(),
            )
            .build()
    };
    for item in document.paths.paths.values_mut() {
        let shared_parameters = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for (writes, operation) in [
            (false, &mut item.get),
            (true, &mut item.put),
            (true, &mut item.post),
            (true, &mut item.delete),
            (true, &mut item.patch),
        ]
        .into_iter()
        .filter_map(|(writes, operation)| operation.as_mut().map(|operation| (writes, operation)))
        {
            let secured = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            // A tenant route that takes only an API key refuses a portal session's token,
            // and a read-only portal session may not replay (POST).
            let schemes = serde_json::to_string(&operation.security).unwrap_or_default();
            let tenant_route = schemes.contains("\"api_key\"");
            let portal_reads_it = schemes.contains("\"portal_session\"") && !writes;
            let has_body = operation.request_body.is_some();
            let has_parameters =
                shared_parameters || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut answers = Vec::new();
            if secured {
                answers.push(("401", "No valid credential for this route"));
            }
            if tenant_route && !portal_reads_it {
                answers.push((
                    "403",
                    "The API key lacks the scope this method needs, the tenant is suspended, a portal session's token where an API key is needed, or a read-only portal session replaying",
                ));
            } else if tenant_route {
                answers.push((
                    "403",
                    "The API key lacks the `read` scope, or the tenant is suspended",
                ));
            }
            if has_parameters || has_body {
                answers.push((
                    "422",
                    "A parameter or body field does not fit; `field` names it",
                ));
            }
            if has_body {
                answers.push(("400", "The body is not JSON"));
                answers.push(("413", "The body is over the configured limit"));
            }
            for (status, description) in answers {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem(description).into());
            }
        }
    }
}
