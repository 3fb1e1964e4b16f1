//! `/console/workspace`: the workspace itself, and where an owner cancels it — "complete
//! deletion on account cancellation" reachable without the API. The form asks for the
//! workspace's name, as the API does; access ends at once and the deletion runs as a job.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use moonengage_accounts::cancellation::{self, CancelError};
use moonengage_accounts::{Role, workspaces};
use serde::Deserialize;
use serde_json::json;

use super::frame::{self, ConsoleError};
use super::session::{self, Console};
use crate::client::ClientOrigin;
use crate::state::AppState;

/// `GET /console/workspace`.
pub(crate) async fn show(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    page(&state, &console, StatusCode::OK, None).await
}

/// The cancellation form's fields.
#[derive(Deserialize)]
pub(crate) struct Cancel {
    csrf: String,
    confirm: String,
}

/// `POST /console/workspace/cancel`: cancels the workspace (owners, confirmed with its name),
/// then forgets the session cookie, which no longer opens anything.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    console: Console,
    ClientOrigin(origin): ClientOrigin,
    Form(form): Form<Cancel>,
) -> Result<Response, ConsoleError> {
    console.check_csrf(&form.csrf)?;
    let principal = console.principal;
    let refused = match cancellation::request(&state.pool, &principal, &form.confirm, &origin).await
    {
        Ok(()) => None,
        Err(CancelError::Internal(error)) => return Err(error.into()),
        Err(error @ CancelError::Role(_)) => Some((StatusCode::FORBIDDEN, error)),
        Err(error @ CancelError::Confirmation) => Some((StatusCode::UNPROCESSABLE_ENTITY, error)),
    };
    if let Some((status, error)) = refused {
        return page(&state, &console, status, Some(error.to_string())).await;
    }
    tracing::info!(
        workspace_id = principal.workspace_id,
        "workspace cancelled in the console"
    );
    let done = frame::message(
        StatusCode::OK,
        "Workspace cancelled",
        "Nobody can sign in to it any more. Everything of it is being deleted; its owners will \
         get an e-mail when that is done.",
        None,
    );
    Ok(([(header::SET_COOKIE, session::expire_cookie())], done).into_response())
}

/// The workspace's name, the user's role, and for owners the cancellation form.
async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, ConsoleError> {
    let principal = console.principal;
    let name = workspaces::name(&state.pool, principal.workspace_id).await?;
    frame::render(
        status,
        "workspace",
        "Workspace",
        Some(console),
        &json!({
            "name": name,
            "role": principal.role,
            "owner": principal.role == Role::Owner,
            "error": error,
            "csrf": console.csrf,
        }),
    )
}
