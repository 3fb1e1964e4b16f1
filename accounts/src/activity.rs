//! Account activity: the security events each user can see about their own account, with the
//! time and a coarse [`Origin`]. Kept `retention.account_activity_days` and used for nothing else (the
//! public privacy page says so); the retention pass removes older events.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

use crate::origin::Origin;

/// What happened to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A login with the right password.
    Login,
    /// A login with a wrong password (or one refused by the brute-force limit).
    LoginFailed,
    /// The user logged out of one session.
    Logout,
    /// The user ended every session of theirs.
    LogoutEverywhere,
    /// The password was set or changed.
    PasswordChanged,
    /// The login e-mail was changed.
    EmailChanged,
    /// A personal API token was created.
    TokenCreated,
    /// A personal API token was revoked.
    TokenRevoked,
    /// Someone joined a workspace of the user's, or the user joined one.
    MemberAdded,
    /// A member's role changed.
    RoleChanged,
    /// A member was removed.
    MemberRemoved,
    /// An invitation to a workspace was sent.
    InvitationSent,
    /// A subscriber's data was exported.
    SubscriberExport,
    /// An owner asked for the workspace to be cancelled.
    CancellationRequested,
    /// An owner granted an operator maintenance access.
    MaintenanceGranted,
    /// An operator used maintenance access.
    MaintenanceUsed,
    /// Maintenance access was revoked or ran out.
    MaintenanceEnded,
}

/// One event as its user sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The workspace it happened in, if any.
    pub workspace_id: Option<i64>,
    /// The network it came from (`/24` or `/48`).
    pub origin: Option<String>,
    /// The browser family.
    pub browser: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Records an event of `user_id`'s account, in the caller's transaction when it has one (so the
/// event commits with the change it reports).
pub async fn record<'e>(
    executor: impl PgExecutor<'e>,
    user_id: i64,
    workspace_id: Option<i64>,
    kind: EventKind,
    origin: &Origin,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO account_events (user_id, workspace_id, kind, origin, browser)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(workspace_id)
    .bind(kind)
    .bind(&origin.network)
    .bind(&origin.browser)
    .execute(executor)
    .await
    .context("recording account activity")?;
    Ok(())
}

/// Records an event in the activity of every owner of the workspace (maintenance access is
/// theirs to watch), in the caller's transaction.
pub async fn record_for_owners<'e>(
    executor: impl PgExecutor<'e>,
    workspace_id: i64,
    kind: EventKind,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO account_events (user_id, workspace_id, kind)
         SELECT user_id, workspace_id, $2 FROM memberships
         WHERE workspace_id = $1 AND role = 'owner'",
    )
    .bind(workspace_id)
    .bind(kind)
    .execute(executor)
    .await
    .context("recording owners' activity")?;
    Ok(())
}

/// The user's own events, newest first.
pub async fn list(pool: &PgPool, user_id: i64, limit: i64) -> anyhow::Result<Vec<Event>> {
    sqlx::query_as(
        "SELECT kind, workspace_id, origin, browser, at FROM account_events
         WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("listing account activity")
}
