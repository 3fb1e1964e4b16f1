//! `GET /v{N}/{PSID}` (User Profile API) and `GET /v{N}/me` (the Page behind a token), so the
//! backend can personalise messages and check Page tokens against the sandbox.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::App;
use crate::errors::GraphError;
use crate::graph::{GraphQuery, is_version};
use crate::state::SandboxState;

const FIRST_NAMES: [&str; 16] = [
    "Alice", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kemi", "Lucas", "Maya", "Nikos", "Olga", "Pablo",
];
const LAST_NAMES: [&str; 8] = [
    "Martin", "Rossi", "Novak", "Silva", "Berg", "Okafor", "Tanaka", "Dubois",
];

/// The Profile / Page lookup handler.
pub(crate) async fn lookup(
    State(app): State<App>,
    Path((version, node)): Path<(String, String)>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> Response {
    let query = query.ok().map(|Query(q)| q);
    let response = answer(&app.state, &version, &node, query);
    app.pause(app.state.latency()).await;
    response
}

fn answer(state: &SandboxState, version: &str, node: &str, query: Option<GraphQuery>) -> Response {
    if !is_version(version) {
        return GraphError::unknown_path().into_response();
    }
    let (token, fields) = query.map_or((None, None), |q| (q.access_token, q.fields));
    let Some(page) = token.and_then(|t| state.resolve_token(&t)) else {
        return GraphError::invalid_token().into_response();
    };
    if let Some(spec) = state.faults().by_page.get(&*page) {
        return GraphError::from_spec(spec).into_response();
    }
    if node == "me" {
        let name = state
            .page_name(&page)
            .unwrap_or_else(|| format!("Sandbox Page {page}"));
        return Json(serde_json::json!({"name": name, "id": &*page})).into_response();
    }
    let wanted = fields.as_deref().unwrap_or("first_name");
    let mut profile = Map::new();
    for field in wanted.split(',').map(str::trim) {
        let value = match field {
            "first_name" => state
                .profile_name(node)
                .unwrap_or_else(|| pick(&FIRST_NAMES, node, 0).to_owned()),
            "last_name" => pick(&LAST_NAMES, node, 1).to_owned(),
            _ => continue,
        };
        profile.insert(field.to_owned(), Value::String(value));
    }
    profile.insert("id".to_owned(), Value::String(node.to_owned()));
    Json(profile).into_response()
}

/// A name chosen from `names` by the PSID, so the same person always gets the same name.
fn pick<'a>(names: &[&'a str], psid: &str, salt: u8) -> &'a str {
    let mut hasher = DefaultHasher::new();
    (psid, salt).hash(&mut hasher);
    names[(hasher.finish() % names.len() as u64) as usize]
}
