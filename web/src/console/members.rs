//! `/console/members`: who belongs to the workspace and with which role (read-only here).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use moonengage_accounts::workspaces;
use serde_json::json;

use super::frame::{self, ConsoleError};
use super::session::Console;
use crate::state::AppState;

/// `GET /console/members`.
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    let members: Vec<_> = workspaces::members(&state.pool, console.principal.workspace_id)
        .await?
        .iter()
        .map(|m| {
            json!({
                "email": m.email,
                "role": m.role,
                "joined": frame::when(m.joined_at),
                "you": m.user_id == console.principal.user_id,
            })
        })
        .collect();
    frame::render(
        StatusCode::OK,
        "members",
        "Members",
        Some(&console),
        &json!({"members": members}),
    )
}
