//! The OpenAPI document for every route of every service, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Webhook delivery: submit events, Herald delivers them signed, retried and recorded.",
    ),
    paths(crate::health::healthz),
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
            "admin_token",
            bearer("The operator token HERALD_ADMIN_TOKEN"),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = OperationsApi::openapi();
    document.merge(herald_command::CommandApi::openapi());
    document.merge(herald_query::QueryApi::openapi());
    document
}
