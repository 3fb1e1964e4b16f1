//! The control API under `/_sandbox/`: the HTTP face of [`SandboxState`], for tests and demos that
//! run the sandbox as a separate process.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::App;
use crate::faults::Faults;
use crate::records::{MessageFilter, ReceivedMessage, Stats};
use crate::registration::{IdMappingRegistration, PageRegistration, ProfileRegistration};
use crate::state::SandboxState;

/// The control routes.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/_sandbox/pages", post(register_page))
        .route("/_sandbox/profiles", post(register_profile))
        .route("/_sandbox/ids-for-pages", post(register_ids_for_pages))
        .route("/_sandbox/closed-window", post(close_window))
        .route("/_sandbox/faults", post(set_faults))
        .route("/_sandbox/latency", post(set_latency))
        .route("/_sandbox/rate-limit", post(set_rate_limit))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/messages", get(messages))
        .route("/_sandbox/stats", get(stats))
}

async fn register_page(
    State(state): State<SandboxState>,
    Json(page): Json<PageRegistration>,
) -> StatusCode {
    state.register_page(page);
    StatusCode::NO_CONTENT
}

async fn register_profile(
    State(state): State<SandboxState>,
    Json(profile): Json<ProfileRegistration>,
) -> StatusCode {
    state.register_profile(profile);
    StatusCode::NO_CONTENT
}

async fn register_ids_for_pages(
    State(state): State<SandboxState>,
    Json(mapping): Json<IdMappingRegistration>,
) -> StatusCode {
    state.register_ids_for_pages(mapping);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClosedWindow {
    psids: Vec<String>,
}

async fn close_window(
    State(state): State<SandboxState>,
    Json(body): Json<ClosedWindow>,
) -> StatusCode {
    state.close_window(body.psids);
    StatusCode::NO_CONTENT
}

async fn set_faults(State(state): State<SandboxState>, Json(faults): Json<Faults>) -> StatusCode {
    state.set_faults(faults);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

async fn set_latency(State(state): State<SandboxState>, Json(body): Json<Latency>) -> StatusCode {
    state.set_latency(Duration::from_millis(body.ms));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RateLimit {
    per_second: u32,
}

async fn set_rate_limit(
    State(state): State<SandboxState>,
    Json(body): Json<RateLimit>,
) -> StatusCode {
    state.set_rate_limit(body.per_second);
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<SandboxState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn messages(
    State(state): State<SandboxState>,
    Query(filter): Query<MessageFilter>,
) -> Json<Vec<ReceivedMessage>> {
    Json(state.messages(&filter))
}

async fn stats(State(state): State<SandboxState>) -> Json<Stats> {
    Json(state.stats())
}
