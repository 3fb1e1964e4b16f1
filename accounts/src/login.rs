//! Logging in to the console: the brute-force limit first, then the password, then a session —
//! with the login (or the failure) in the account's activity and, from an origin the account's
//! activity has no login from, a "new origin" alert, in the session's transaction.

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use secrecy::SecretString;
use sqlx::PgPool;

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::login_limit::{Attempt, LoginLimiter};
use crate::origin::Origin;
use crate::sessions::{self, NewSession};
use crate::{AccountsSettings, users};

/// A login that worked.
#[derive(Debug)]
pub struct LoggedIn {
    /// `users.id`.
    pub user_id: i64,
    /// The workspace the session acts in.
    pub workspace_id: i64,
    /// The session, whose secret goes to the browser.
    pub session: NewSession,
}

/// Why a login did not work. The messages are what the person is told.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many attempts for this account or from this network: the password was not checked.
    #[error("too many attempts, try again in {} minutes", minutes(*retry_after))]
    TooManyAttempts {
        /// Until the limit's window ends.
        retry_after: Duration,
    },
    /// Unknown e-mail or wrong password (never said which).
    #[error("wrong e-mail or password")]
    WrongCredentials,
    /// The account belongs to no live workspace.
    #[error("this account belongs to no workspace")]
    NoWorkspace,
    /// The database or the hashing task failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Whole minutes to wait, at least one.
fn minutes(wait: Duration) -> u64 {
    wait.as_secs().div_ceil(60).max(1)
}

/// Logs `email` in with `password` from `origin`: counts the attempt, checks the password only
/// when the limit allows, and on success creates a session in the user's first live workspace.
/// A refused or failed login of a known account is recorded as `LoginFailed`.
pub async fn login(
    pool: &PgPool,
    limiter: &LoginLimiter,
    settings: &AccountsSettings,
    email: &str,
    password: SecretString,
    origin: &Origin,
) -> Result<LoggedIn, LoginError> {
    if let Attempt::Refused { retry_after } = limiter.attempt(email, origin).await {
        failed(pool, email, origin).await?;
        return Err(LoginError::TooManyAttempts { retry_after });
    }
    let Some(user_id) = users::check_login(pool, email, password).await? else {
        failed(pool, email, origin).await?;
        return Err(LoginError::WrongCredentials);
    };
    limiter.succeeded(email).await;
    let workspace_id: Option<i64> = sqlx::query_scalar(
        "SELECT m.workspace_id FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
         WHERE m.user_id = $1 AND w.cancelled_at IS NULL ORDER BY m.workspace_id LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
    .context("choosing the workspace of a session")?;
    let workspace_id = workspace_id.ok_or(LoginError::NoWorkspace)?;
    let mut tx = pool.begin().await.context("starting a login")?;
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM account_events WHERE user_id = $1 AND kind = $2
             AND origin IS NOT DISTINCT FROM $3 AND browser IS NOT DISTINCT FROM $4)",
    )
    .bind(user_id)
    .bind(EventKind::Login)
    .bind(&origin.network)
    .bind(&origin.browser)
    .fetch_one(&mut *tx)
    .await
    .context("looking for the login's origin in the account's activity")?;
    let session = sessions::create(&mut tx, user_id, workspace_id, origin, settings).await?;
    activity::record(
        &mut *tx,
        user_id,
        Some(workspace_id),
        EventKind::Login,
        origin,
    )
    .await?;
    if !known {
        let at_ms = Utc::now().timestamp_millis();
        alerts::alert(&mut *tx, AccountAlert::NewOrigin { user_id, at_ms }).await?;
    }
    tx.commit().await.context("committing a login")?;
    tracing::info!(user_id, session_id = session.id, "logged in");
    Ok(LoggedIn {
        user_id,
        workspace_id,
        session,
    })
}

/// Records a failed login of a known account (an unknown e-mail has no activity to keep).
async fn failed(pool: &PgPool, email: &str, origin: &Origin) -> anyhow::Result<()> {
    if let Some(user_id) = users::id_by_email(pool, email).await? {
        activity::record(pool, user_id, None, EventKind::LoginFailed, origin).await?;
        tracing::info!(user_id, "login failed");
    }
    Ok(())
}
