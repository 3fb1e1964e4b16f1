//! `/console/tokens`: the user's personal API tokens in this workspace — for when they choose
//! no cookies, or for scripts. A new token is shown once, on the page that created it; any can
//! be revoked at once.

use anyhow::Context as _;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::alerts::{self, AccountAlert};
use moonengage_accounts::tokens::{self, CreateError};
use moonengage_accounts::{Role, origin::Origin};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::frame::{self, ConsoleError};
use super::session::{Console, Csrf};
use crate::client::ClientOrigin;
use crate::state::AppState;

/// `GET /console/tokens`.
pub(crate) async fn list(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    page(&state, &console, StatusCode::OK, json!(null), None).await
}

/// The new-token form's fields.
#[derive(Deserialize)]
pub(crate) struct NewToken {
    csrf: String,
    name: String,
    role: Role,
    days: i64,
}

/// `POST /console/tokens`: creates a token and shows it, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    console: Console,
    ClientOrigin(origin): ClientOrigin,
    Form(form): Form<NewToken>,
) -> Result<Response, ConsoleError> {
    console.check_csrf(&form.csrf)?;
    let principal = console.principal;
    let accounts = &state.settings.accounts;
    let refused = |message: String| async {
        page(
            &state,
            &console,
            StatusCode::UNPROCESSABLE_ENTITY,
            json!(null),
            Some(message),
        )
        .await
    };
    if form.role > principal.role {
        return refused(format!(
            "a token cannot have a role above yours ({})",
            principal.role
        ))
        .await;
    }
    let mut tx = state.pool.begin().await.context("creating a token")?;
    let created = tokens::create(
        &mut tx,
        tokens::Request {
            workspace_id: principal.workspace_id,
            user_id: principal.user_id,
            name: &form.name,
            role: form.role,
            days: form.days,
            max_days: accounts.token_max_days,
        },
    )
    .await;
    let created = match created {
        Ok(created) => created,
        Err(CreateError::Internal(error)) => return Err(error.into()),
        Err(CreateError::NotAMember) => return Err(ConsoleError::LoggedOut),
        Err(invalid) => return refused(invalid.to_string()).await,
    };
    record(
        &mut tx,
        principal.user_id,
        principal.workspace_id,
        created.id,
        &origin,
    )
    .await?;
    tx.commit().await.context("committing a new token")?;
    tracing::info!(token_id = created.id, "api token created in the console");
    let shown = json!({
        "token": created.token.expose_secret(),
        "expires": frame::when(created.expires_at),
    });
    page(&state, &console, StatusCode::CREATED, shown, None).await
}

/// The creation's activity and alert, in the creation's transaction.
async fn record(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    workspace_id: i64,
    token_id: i64,
    origin: &Origin,
) -> anyhow::Result<()> {
    activity::record(
        &mut *tx,
        user_id,
        Some(workspace_id),
        EventKind::TokenCreated,
        origin,
    )
    .await?;
    alerts::alert(&mut *tx, AccountAlert::TokenCreated { user_id, token_id }).await?;
    Ok(())
}

/// `POST /console/tokens/{id}/revoke`: revokes one of the user's own tokens.
pub(crate) async fn revoke(
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
        .context("starting to revoke a token")?;
    let owner = tokens::revoke(&mut *tx, principal.workspace_id, id).await?;
    if owner != Some(principal.user_id) {
        return Err(ConsoleError::NotFound("token"));
    }
    activity::record(
        &mut *tx,
        principal.user_id,
        Some(principal.workspace_id),
        EventKind::TokenRevoked,
        &origin,
    )
    .await?;
    tx.commit()
        .await
        .context("committing a token's revocation")?;
    tracing::info!(token_id = id, "api token revoked in the console");
    Ok(Redirect::to("/console/tokens").into_response())
}

/// The list, the form, and a token just created or why it was not.
async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    created: Value,
    error: Option<String>,
) -> Result<Response, ConsoleError> {
    let principal = console.principal;
    let tokens: Vec<_> = tokens::list(&state.pool, principal.workspace_id, principal.user_id)
        .await?
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "created": frame::when(t.created_at),
                "expires": frame::when(t.expires_at),
                "last_used": t.last_used_at.map(frame::when),
            })
        })
        .collect();
    let roles: Vec<_> = [Role::Viewer, Role::Admin, Role::Owner]
        .into_iter()
        .filter(|role| *role <= principal.role)
        .map(|role| json!({"role": role, "selected": role == principal.role}))
        .collect();
    frame::render(
        status,
        "tokens",
        "API tokens",
        Some(console),
        &json!({
            "tokens": tokens,
            "roles": roles,
            "days": state.settings.accounts.token_days,
            "max_days": state.settings.accounts.token_max_days,
            "created": created,
            "error": error,
            "csrf": console.csrf,
        }),
    )
}
