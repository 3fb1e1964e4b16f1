//! The admin API under `/api/v1`: JSON in and out, bearer tokens, and an OpenAPI document
//! generated from the handlers' annotations (so it cannot drift from the code).

mod auth;
mod campaigns;
mod doc;
mod dsr;
mod incidents;
mod maintenance;
mod me;
mod members;
mod pages;
mod policy;
mod schema;
mod subscribers;
mod workspace;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use doc::ApiDoc;

/// Where the document is served.
pub(crate) const OPENAPI_PATH: &str = "/api/v1/openapi.json";

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
    doc::CommonErrors.modify(&mut document);
    schema::not_blank(&mut document);
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
