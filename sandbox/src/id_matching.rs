//! `GET /v{N}/{app-scoped-id}/ids_for_pages` (ID Matching API): the Page-scoped ids of the
//! person an app-scoped id names, from the mapping tests register. Called with an app access
//! token (`{app-id}|{app-secret}`) and its `appsecret_proof` (HMAC-SHA256 of the token keyed
//! with the app secret), as Facebook requires.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::App;
use crate::errors::GraphError;
use crate::graph::is_version;

/// The query of an ID Matching call.
#[derive(Deserialize)]
pub(crate) struct IdsQuery {
    access_token: Option<String>,
    appsecret_proof: Option<String>,
}

/// Answers `{"data": [{"id": PSID, "page": {"id": PAGE}}…]}`; empty when nobody is mapped.
pub(crate) async fn ids_for_pages(
    State(app): State<App>,
    Path((version, app_scoped_id)): Path<(String, String)>,
    query: Result<Query<IdsQuery>, QueryRejection>,
) -> Response {
    if !is_version(&version) {
        return GraphError::unknown_path().into_response();
    }
    let Ok(Query(query)) = query else {
        return GraphError::invalid_token().into_response();
    };
    let Some((token, proof)) = query.access_token.zip(query.appsecret_proof) else {
        return GraphError::invalid_token().into_response();
    };
    if !proof_matches(&token, &proof) {
        return GraphError::invalid_parameter(
            "Invalid appsecret_proof provided in the API argument",
        )
        .into_response();
    }
    let data: Vec<serde_json::Value> = app
        .state
        .ids_for_pages(&app_scoped_id)
        .into_iter()
        .map(|id| serde_json::json!({"id": id.psid, "page": {"id": id.page_id}}))
        .collect();
    app.pause(app.state.latency()).await;
    Json(serde_json::json!({ "data": data })).into_response()
}

/// Whether `proof` is the HMAC-SHA256 of an app token `{app-id}|{app-secret}` keyed with its
/// secret.
fn proof_matches(token: &str, proof: &str) -> bool {
    let Some((_, secret)) = token.split_once('|') else {
        return false;
    };
    let Ok(proof) = hex::decode(proof) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(token.as_bytes());
    mac.verify_slice(&proof).is_ok()
}
