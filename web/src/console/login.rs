//! `/console/login`, `/console/logout` and `/console/logout-everywhere`: logging in creates a
//! session and hands its secret to the browser in the session cookie; logging out deletes the
//! session's row and expires the cookie; logging out everywhere deletes every session of the
//! user. Each is recorded in the user's activity with the request's coarse origin.

use anyhow::Context as _;
use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::login::{self, LoginError};
use moonengage_accounts::{Via, sessions};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::frame::{self, ConsoleError};
use super::session::{self, Console, Csrf};
use crate::client::ClientOrigin;
use crate::state::AppState;

/// `GET /console/login`: the form.
pub(crate) async fn form() -> Result<Response, ConsoleError> {
    login_page(StatusCode::OK, None, "")
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: SecretString,
}

/// `POST /console/login`: a session and its cookie, or the form again saying why not.
pub(crate) async fn submit(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Form(credentials): Form<Credentials>,
) -> Result<Response, ConsoleError> {
    let result = login::login(
        &state.pool,
        &state.login_limiter,
        &state.settings.accounts,
        &credentials.email,
        credentials.password,
        &origin,
    )
    .await;
    let status = match &result {
        Ok(_) => StatusCode::SEE_OTHER,
        Err(LoginError::TooManyAttempts { .. }) => StatusCode::TOO_MANY_REQUESTS,
        Err(LoginError::WrongCredentials) => StatusCode::UNAUTHORIZED,
        Err(LoginError::NoWorkspace) => StatusCode::FORBIDDEN,
        Err(LoginError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    match result {
        Ok(logged_in) => Ok((
            [(
                header::SET_COOKIE,
                session::set_cookie(&logged_in.session.secret),
            )],
            Redirect::to("/console"),
        )
            .into_response()),
        Err(LoginError::Internal(error)) => Err(error.into()),
        Err(refused) => login_page(status, Some(&refused.to_string()), &credentials.email),
    }
}

fn login_page(
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Result<Response, ConsoleError> {
    frame::render(
        status,
        "login",
        "Log in",
        None,
        &json!({"error": error, "email": email}),
    )
}

/// `POST /console/logout`: ends this session and expires its cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    console: Console,
    ClientOrigin(origin): ClientOrigin,
    Form(form): Form<Csrf>,
) -> Result<Response, ConsoleError> {
    console.check_csrf(&form.csrf)?;
    let principal = console.principal;
    let Via::Session(id) = principal.via else {
        return Err(ConsoleError::LoggedOut);
    };
    let mut tx = state.pool.begin().await.context("starting a logout")?;
    sessions::end(&mut *tx, principal.user_id, id).await?;
    activity::record(
        &mut *tx,
        principal.user_id,
        Some(principal.workspace_id),
        EventKind::Logout,
        &origin,
    )
    .await?;
    tx.commit().await.context("committing a logout")?;
    tracing::info!(user_id = principal.user_id, session_id = id, "logged out");
    Ok(logged_out())
}

/// `POST /console/logout-everywhere`: ends every session of the user, this one included.
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    console: Console,
    ClientOrigin(origin): ClientOrigin,
    Form(form): Form<Csrf>,
) -> Result<Response, ConsoleError> {
    console.check_csrf(&form.csrf)?;
    let principal = console.principal;
    let mut tx = state
        .pool
        .begin()
        .await
        .context("starting to log out everywhere")?;
    let ended = sessions::end_all(&mut *tx, principal.user_id).await?;
    activity::record(
        &mut *tx,
        principal.user_id,
        Some(principal.workspace_id),
        EventKind::LogoutEverywhere,
        &origin,
    )
    .await?;
    tx.commit()
        .await
        .context("committing a logout everywhere")?;
    tracing::info!(user_id = principal.user_id, ended, "logged out everywhere");
    Ok(logged_out())
}

/// Back to the login form, with the cookie expired.
fn logged_out() -> Response {
    (
        [(header::SET_COOKIE, session::expire_cookie())],
        Redirect::to("/console/login"),
    )
        .into_response()
}
