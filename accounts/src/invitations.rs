//! Invitations: how a person joins a workspace, and how a new owner sets their first password.
//! An invitation names an e-mail and a role and expires after `accounts.invitation_hours`. Its
//! link is minted only when the e-mail job runs ([`mint_link`]): the row keeps the hash of the
//! latest link, the job payload the invitation id — so no secret is ever stored or queued, and a
//! retried e-mail simply carries a fresh link that replaces the earlier one.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use moonengage_queue::{Job, jobs};

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::origin::Origin;
use crate::users::{self, SetPasswordError};
use crate::{Role, password, secret, workspaces};

/// Marks invitation links, so a leaked one is recognisable.
pub const PREFIX: &str = "mi_";

/// The e-mail carrying an invitation's link (kind `invitation`): the invitation's id only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationJob {
    /// `invitations.id`.
    pub invitation_id: i64,
}

impl Job for InvitationJob {
    const KIND: &'static str = "invitation";

    /// The link must arrive: it waits out an SMTP outage at the capped backoff.
    const MAX_ATTEMPTS: Option<i32> = Some(i32::MAX);

    fn key(&self) -> String {
        self.invitation_id.to_string()
    }
}

/// An invitation to create.
#[derive(Debug, Clone, Copy)]
pub struct New<'a> {
    /// The workspace to join.
    pub workspace_id: i64,
    /// The invitee's address, already normalised.
    pub email: &'a str,
    /// The role they get.
    pub role: Role,
    /// Who invited them (`None` for the CLI's bootstrap of a new owner).
    pub invited_by: Option<i64>,
    /// How long the link works (`accounts.invitation_hours`).
    pub hours: i64,
}

/// Creates an invitation and queues its e-mail, in the caller's transaction (which also records
/// `InvitationSent`). Returns its id.
pub async fn create(conn: &mut PgConnection, new: New<'_>) -> anyhow::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO invitations (workspace_id, email, role, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(hours => $5)) RETURNING id",
    )
    .bind(new.workspace_id)
    .bind(new.email)
    .bind(new.role)
    .bind(new.invited_by)
    .bind(i32::try_from(new.hours).unwrap_or(i32::MAX))
    .fetch_one(&mut *conn)
    .await
    .context("creating an invitation")?;
    let job = InvitationJob { invitation_id: id };
    jobs::enqueue(&mut *conn, &job, i32::MAX).await?;
    Ok(id)
}

/// What the invitation e-mail says, with the freshly minted link's secret.
#[derive(Debug)]
pub struct Link {
    /// The invitee's address.
    pub email: String,
    /// The workspace's name.
    pub workspace: String,
    /// The role offered.
    pub role: Role,
    /// Whether the invitee must choose a password (no account, or none set yet).
    pub new_user: bool,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// The secret of the link; only its hash is stored.
    pub secret: SecretString,
}

/// Mints a new link for a pending invitation and stores its hash (replacing any earlier link);
/// `None` when the invitation is gone, used or expired (nothing to send).
pub async fn mint_link(pool: &PgPool, invitation_id: i64) -> anyhow::Result<Option<Link>> {
    let minted = secret::mint(PREFIX);
    let row: Option<(String, String, Role, bool, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE invitations i SET token_hash = $2 FROM workspaces w
         WHERE i.id = $1 AND w.id = i.workspace_id AND i.accepted_at IS NULL
           AND i.expires_at > now() AND w.cancelled_at IS NULL
         RETURNING i.email, w.name, i.role,
             NOT EXISTS (SELECT 1 FROM users u WHERE u.email = i.email
                         AND u.password_hash IS NOT NULL),
             i.expires_at",
    )
    .bind(invitation_id)
    .bind(&minted.hash)
    .fetch_optional(pool)
    .await
    .context("minting an invitation link")?;
    Ok(
        row.map(|(email, workspace, role, new_user, expires_at)| Link {
            email,
            workspace,
            role,
            new_user,
            expires_at,
            secret: minted.secret,
        }),
    )
}

/// A link as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It can be accepted.
    Pending {
        /// The workspace's name.
        workspace: String,
        /// The role offered.
        role: Role,
        /// Whether accepting sets a password (otherwise the invitee gives theirs).
        new_user: bool,
    },
    /// It was accepted already.
    Used,
    /// It ran out.
    Expired,
    /// No such link (or one replaced by a newer e-mail).
    Unknown,
}

/// What a presented link is.
pub async fn lookup(pool: &PgPool, link: &SecretString) -> anyhow::Result<Lookup> {
    let row: Option<(String, Role, bool, bool, bool)> = sqlx::query_as(
        "SELECT w.name, i.role, i.accepted_at IS NOT NULL, i.expires_at <= now(),
             NOT EXISTS (SELECT 1 FROM users u WHERE u.email = i.email
                         AND u.password_hash IS NOT NULL)
         FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
         WHERE i.token_hash = $1 AND w.cancelled_at IS NULL",
    )
    .bind(secret::hash_secret(link))
    .fetch_optional(pool)
    .await
    .context("looking up an invitation link")?;
    Ok(match row {
        None => Lookup::Unknown,
        Some((_, _, true, _, _)) => Lookup::Used,
        Some((_, _, _, true, _)) => Lookup::Expired,
        Some((workspace, role, _, _, new_user)) => Lookup::Pending {
            workspace,
            role,
            new_user,
        },
    })
}

/// Why an invitation could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The link is unknown, used or expired.
    #[error("this invitation link is {0}")]
    Invalid(&'static str),
    /// The new password breaks a rule; the message says which.
    #[error(transparent)]
    Password(#[from] SetPasswordError),
    /// An existing account's password is wrong.
    #[error("the password is not this account's")]
    WrongPassword,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Whom an accepted invitation made a member of what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The member's `users.id`.
    pub user_id: i64,
    /// The workspace joined.
    pub workspace_id: i64,
}

/// Accepts an invitation: sets the password of a new account (checked per NIST, the error
/// names the problem) or checks an existing account's, then makes the membership, records
/// `MemberAdded` and queues its alert — all in one transaction, so the link works once.
pub async fn accept(
    pool: &PgPool,
    link: &SecretString,
    given: SecretString,
    origin: &Origin,
) -> Result<Accepted, AcceptError> {
    let mut tx = pool.begin().await.context("starting to accept")?;
    let row: Option<(i64, i64, String, Role, bool, bool)> = sqlx::query_as(
        "SELECT i.workspace_id, i.id, i.email, i.role, i.accepted_at IS NOT NULL,
             i.expires_at <= now() OR w.cancelled_at IS NOT NULL
         FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
         WHERE i.token_hash = $1 FOR UPDATE OF i",
    )
    .bind(secret::hash_secret(link))
    .fetch_optional(&mut *tx)
    .await
    .context("reading an invitation")?;
    let (workspace_id, id, email, role) = match row {
        None => return Err(AcceptError::Invalid("unknown")),
        Some((.., true, _)) => return Err(AcceptError::Invalid("already used")),
        Some((.., true)) => return Err(AcceptError::Invalid("expired")),
        Some((workspace_id, id, email, role, ..)) => (workspace_id, id, email, role),
    };
    let (user_id, _) = users::find_or_create(&mut *tx, &email).await?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .context("reading the invitee's account")?;
    let set_password = stored.is_none();
    if set_password {
        users::set_password(&mut tx, user_id, given).await?;
    } else if !password::verify(given, stored).await? {
        return Err(AcceptError::WrongPassword);
    }
    workspaces::set_member(&mut tx, workspace_id, user_id, role).await?;
    sqlx::query("UPDATE invitations SET accepted_at = now() WHERE workspace_id = $1 AND id = $2")
        .bind(workspace_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("marking an invitation accepted")?;
    activity::record(
        &mut *tx,
        user_id,
        Some(workspace_id),
        EventKind::MemberAdded,
        origin,
    )
    .await?;
    if set_password {
        activity::record(&mut *tx, user_id, None, EventKind::PasswordChanged, origin).await?;
    }
    alerts::alert(
        &mut *tx,
        AccountAlert::MemberAdded {
            workspace_id,
            user_id,
        },
    )
    .await?;
    tx.commit().await.context("committing an acceptance")?;
    tracing::debug!(invitation_id = id, "invitation accepted");
    Ok(Accepted {
        user_id,
        workspace_id,
    })
}
