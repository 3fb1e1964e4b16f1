//! `/console`: the user's own account activity — what happened, when, from which network and
//! browser family — the only place these events are ever shown or used.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use moonengage_accounts::activity;
use serde_json::json;

use super::frame::{self, ConsoleError};
use super::session::Console;
use crate::state::AppState;

/// The most events the page shows.
const SHOWN: i64 = 200;

/// `GET /console`.
pub(crate) async fn show(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    let events = activity::list(&state.pool, console.principal.user_id, SHOWN).await?;
    let rows: Vec<_> = events
        .iter()
        .map(|event| {
            let kind = serde_json::to_value(event.kind)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default();
            json!({
                "kind": kind,
                "at": frame::when(event.at),
                "origin": event.origin.as_deref().unwrap_or("unknown"),
                "browser": event.browser.as_deref().unwrap_or("unknown"),
            })
        })
        .collect();
    frame::render(
        StatusCode::OK,
        "activity",
        "Account activity",
        Some(&console),
        &json!({
            "events": rows,
            "days": state.settings.retention.account_activity_days,
            "csrf": console.csrf,
        }),
    )
}
