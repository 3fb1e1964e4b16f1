//! The admin API under `/api/v1`: JSON in and out, bearer tokens, and an OpenAPI document
//! generated from the handlers' annotations (so it cannot drift from the code).

mod auth;
mod campaigns;
mod dsr;
mod incidents;
mod maintenance;
mod me;
mod members;
mod pages;
mod policy;
mod subscribers;
mod workspace;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Where the document is served.
pub(crate) const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MoonEngage admin API",
        description = "Pages, campaigns, subscribers, data-subject requests and the breach \
                       register. Every call needs \
                       `Authorization: Bearer <token>`; errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the bearer scheme the `security` requirement refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// Every route of the API, behind the token check, plus the public OpenAPI document.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let (api, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(pages::register, pages::list))
        .routes(routes!(pages::set_send_rate))
        .routes(routes!(pages::resume))
        .routes(routes!(campaigns::create))
        .routes(routes!(campaigns::show))
        .routes(routes!(campaigns::schedule))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::cancel))
        .routes(routes!(subscribers::counts))
        .routes(routes!(dsr::file))
        .routes(routes!(dsr::show))
        .routes(routes!(dsr::reissue_export_link))
        .routes(routes!(policy::publish, policy::list))
        .routes(routes!(incidents::declare, incidents::list))
        .routes(routes!(incidents::show, incidents::update))
        .routes(routes!(incidents::notice))
        .routes(routes!(auth::create_token, auth::list_tokens))
        .routes(routes!(auth::revoke_token))
        .routes(routes!(auth::logout))
        .routes(routes!(members::list))
        .routes(routes!(workspace::cancel))
        .routes(routes!(maintenance::grant, maintenance::list))
        .routes(routes!(maintenance::revoke))
        .routes(routes!(me::change_password))
        .routes(routes!(me::change_email))
        .routes(routes!(members::invite))
        .routes(routes!(members::change_role, members::remove))
        .split_for_parts();
    let import = OpenApiRouter::new()
        .routes(routes!(subscribers::import))
        .layer(DefaultBodyLimit::max(state.settings.web.max_import_bytes));
    let (import, import_document) = import.split_for_parts();
    let mut document = document;
    document.merge(import_document);
    let document = Arc::new(document);
    api.merge(import)
        .route_layer(from_fn_with_state(state.clone(), auth::require_token))
        .route(
            OPENAPI_PATH,
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
}
