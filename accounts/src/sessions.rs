//! Console sessions: what a login in a browser creates. The secret goes to the browser once (in
//! a `__Host-` cookie) and only its hash is stored; a session ends at logout (its row is
//! deleted), after `accounts.session_idle_minutes` without a request, or
//! `accounts.session_absolute_hours` after the login whatever happens. Like a token, it is
//! checked on every request: a removed member or a cancelled workspace is refused at once.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use crate::origin::Origin;
use crate::{AccountsSettings, Principal, Role, Via, secret};

/// Marks our session secrets, so a leaked one is recognisable in a secret scanner.
pub const PREFIX: &str = "mes_";

/// A session just created: its secret is for the browser's cookie, never stored.
#[derive(Debug)]
pub struct NewSession {
    /// `sessions.id`.
    pub id: i64,
    /// The secret the browser presents.
    pub secret: SecretString,
}

/// Creates a session of `user_id` acting in `workspace_id`, in the caller's transaction (the
/// login's), and deletes every session that has expired meanwhile.
pub async fn create(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    workspace_id: i64,
    origin: &Origin,
    settings: &AccountsSettings,
) -> anyhow::Result<NewSession> {
    sqlx::query(
        "DELETE FROM sessions
         WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(mins => $1)",
    )
    .bind(int(settings.session_idle_minutes))
    .execute(&mut *conn)
    .await
    .context("deleting expired sessions")?;
    let minted = secret::mint(PREFIX);
    let id = sqlx::query_scalar(
        "INSERT INTO sessions (user_id, workspace_id, token_hash, expires_at, origin, browser)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4), $5, $6) RETURNING id",
    )
    .bind(user_id)
    .bind(workspace_id)
    .bind(&minted.hash)
    .bind(int(settings.session_absolute_hours))
    .bind(&origin.network)
    .bind(&origin.browser)
    .fetch_one(&mut *conn)
    .await
    .context("creating a session")?;
    Ok(NewSession {
        id,
        secret: minted.secret,
    })
}

/// The principal a presented session secret acts as, or `None` when it is unknown, ended, idle
/// too long, past its absolute expiry, of a cancelled workspace, or its user is no longer a
/// member. Notes the request as activity at most once a minute (a write per request would
/// be a write per page view).
pub async fn authenticate(
    pool: &PgPool,
    presented: &SecretString,
    settings: &AccountsSettings,
) -> anyhow::Result<Option<Principal>> {
    let row: Option<(i64, i64, i64, Role, bool)> = sqlx::query_as(
        "WITH live AS (
             SELECT s.id, s.user_id, s.workspace_id, m.role, u.is_operator, s.last_seen_at
             FROM sessions s
             JOIN memberships m ON m.workspace_id = s.workspace_id AND m.user_id = s.user_id
             JOIN users u ON u.id = s.user_id
             JOIN workspaces w ON w.id = s.workspace_id AND w.cancelled_at IS NULL
             WHERE s.token_hash = $1 AND s.expires_at > now()
               AND s.last_seen_at > now() - make_interval(mins => $2)
         ), touched AS (
             UPDATE sessions SET last_seen_at = now() FROM live
             WHERE sessions.id = live.id AND live.last_seen_at < now() - interval '1 minute'
         )
         SELECT id, user_id, workspace_id, role, is_operator FROM live",
    )
    .bind(secret::hash_secret(presented))
    .bind(int(settings.session_idle_minutes))
    .fetch_optional(pool)
    .await
    .context("checking a session")?;
    Ok(
        row.map(|(id, user_id, workspace_id, role, operator)| Principal {
            user_id,
            workspace_id,
            role,
            operator,
            via: Via::Session(id),
        }),
    )
}

/// Ends one session of the user (logout, or "end" in their list); whether one was ended.
pub async fn end<'e>(executor: impl PgExecutor<'e>, user_id: i64, id: i64) -> anyhow::Result<bool> {
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id = $2")
        .bind(user_id)
        .bind(id)
        .execute(executor)
        .await
        .context("ending a session")?;
    Ok(ended.rows_affected() > 0)
}

/// Ends every session of the user ("log out everywhere"); how many there were.
pub async fn end_all<'e>(executor: impl PgExecutor<'e>, user_id: i64) -> anyhow::Result<u64> {
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(executor)
        .await
        .context("ending every session of a user")?;
    Ok(ended.rows_affected())
}

/// A session as its user's list shows it (never the secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SessionView {
    /// `sessions.id`, to end it.
    pub id: i64,
    /// The workspace it acts in.
    pub workspace_id: i64,
    /// When the user logged in.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_seen_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
    /// The network it was created from (`/24` or `/48`).
    pub origin: Option<String>,
    /// The browser family.
    pub browser: Option<String>,
}

/// The user's live sessions, newest first.
pub async fn list(
    pool: &PgPool,
    user_id: i64,
    settings: &AccountsSettings,
) -> anyhow::Result<Vec<SessionView>> {
    sqlx::query_as(
        "SELECT id, workspace_id, created_at, last_seen_at, expires_at, origin, browser
         FROM sessions
         WHERE user_id = $1 AND expires_at > now()
           AND last_seen_at > now() - make_interval(mins => $2)
         ORDER BY id DESC",
    )
    .bind(user_id)
    .bind(int(settings.session_idle_minutes))
    .fetch_all(pool)
    .await
    .context("listing sessions")
}

/// A setting as the `int` that `make_interval` takes.
fn int(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
