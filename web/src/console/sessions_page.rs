//! `/console/sessions`: the user's live sessions (where and when each began, when it was last
//! used), each of which they can end; "log out everywhere" ends them all.

use anyhow::Context as _;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::{Via, sessions};
use serde_json::json;

use super::frame::{self, ConsoleError};
use super::session::{Console, Csrf};
use crate::client::ClientOrigin;
use crate::state::AppState;

/// `GET /console/sessions`.
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    let current = match console.principal.via {
        Via::Session(id) => Some(id),
        Via::Token(_) => None,
    };
    let rows: Vec<_> = sessions::list(
        &state.pool,
        console.principal.user_id,
        &state.settings.accounts,
    )
    .await?
    .iter()
    .map(|s| {
        json!({
            "id": s.id,
            "current": Some(s.id) == current,
            "created": frame::when(s.created_at),
            "last_seen": frame::when(s.last_seen_at),
            "expires": frame::when(s.expires_at),
            "origin": s.origin.as_deref().unwrap_or("unknown"),
            "browser": s.browser.as_deref().unwrap_or("unknown"),
        })
    })
    .collect();
    frame::render(
        StatusCode::OK,
        "sessions",
        "Sessions",
        Some(&console),
        &json!({"sessions": rows, "csrf": console.csrf}),
    )
}

/// `POST /console/sessions/{id}/end`: ends one of the user's sessions (another device's, or
/// this one, which is then a logout).
pub(crate) async fn end(
    State(state): State<AppState>,
    console: Console,
    ClientOrigin(origin): ClientOrigin,
    Path(id): Path<i64>,
    Form(form): Form<Csrf>,
) -> Result<Response, ConsoleError> {
    console.check_csrf(&form.csrf)?;
    let principal = console.principal;
    let mut tx = state
        .pool
        .begin()
        .await
        .context("starting to end a session")?;
    if !sessions::end(&mut *tx, principal.user_id, id).await? {
        return Err(ConsoleError::NotFound("session"));
    }
    activity::record(
        &mut *tx,
        principal.user_id,
        Some(principal.workspace_id),
        EventKind::Logout,
        &origin,
    )
    .await?;
    tx.commit()
        .await
        .context("committing the end of a session")?;
    tracing::info!(
        user_id = principal.user_id,
        session_id = id,
        "session ended"
    );
    Ok(Redirect::to("/console/sessions").into_response())
}
