//! A workspace's members: listed to every member, invited by admins, their roles changed and
//! removed by admins — with owners' roles in owners' hands only, and never the last owner
//! demoted or removed (a workspace always has somebody who can cancel it). Each act records the
//! event and queues the alert in its own transaction; the workspace row is locked first, so two
//! owners demoting each other at once cannot leave none.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::invitations;
use crate::maintenance;
use crate::origin::Origin;
use crate::users::{self, InvalidEmail};
use crate::{Forbidden, Principal, Role};

/// A member as the list shows them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Member {
    /// `users.id`.
    pub user_id: i64,
    /// Their login e-mail.
    pub email: String,
    /// Their role here.
    pub role: Role,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// Why a change to the members was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The principal's role does not allow it.
    #[error(transparent)]
    Role(#[from] Forbidden),
    /// No such member in this workspace.
    #[error("no such member")]
    NotFound,
    /// It would leave the workspace without an owner.
    #[error("the last owner cannot be demoted or removed; make someone else an owner first")]
    LastOwner,
    /// The invitee's address is not one.
    #[error(transparent)]
    Email(#[from] InvalidEmail),
    /// Maintenance access does not extend to who belongs to the workspace.
    #[error("maintenance access cannot change the workspace's members")]
    Maintenance,
    /// The invitee is a member already.
    #[error("this person is already a member; change their role instead")]
    AlreadyMember,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The members of the principal's workspace, owners first.
pub async fn list(pool: &PgPool, workspace_id: i64) -> anyhow::Result<Vec<Member>> {
    sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at AS joined_at
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.user_id",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .context("listing members")
}

/// Invites `email` with `role` (at most the inviter's own; Admin or more to invite at all).
/// Returns the invitation's id; its e-mail is queued with it.
pub async fn invite(
    pool: &PgPool,
    by: &Principal,
    email: &str,
    role: Role,
    hours: i64,
) -> Result<i64, MemberError> {
    by.require(Role::Admin)?;
    by.require(role)?;
    not_maintenance(pool, by).await?;
    let email = users::normalize_email(email)?;
    let mut tx = pool.begin().await.context("starting an invitation")?;
    let member: Option<i64> = sqlx::query_scalar(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 AND u.email = $2",
    )
    .bind(by.workspace_id)
    .bind(&email)
    .fetch_optional(&mut *tx)
    .await
    .context("checking the invitee")?;
    if member.is_some() {
        return Err(MemberError::AlreadyMember);
    }
    let id = invitations::create(
        &mut tx,
        invitations::New {
            workspace_id: by.workspace_id,
            email: &email,
            role,
            invited_by: Some(by.user_id),
            hours,
        },
    )
    .await?;
    activity::record(
        &mut *tx,
        by.user_id,
        Some(by.workspace_id),
        EventKind::InvitationSent,
        &Origin::default(),
    )
    .await?;
    tx.commit().await.context("committing an invitation")?;
    Ok(id)
}

/// Refuses a principal acting through maintenance access.
async fn not_maintenance(pool: &PgPool, by: &Principal) -> Result<(), MemberError> {
    if maintenance::is_maintenance(pool, by).await? {
        return Err(MemberError::Maintenance);
    }
    Ok(())
}

/// Locks the workspace (serialising member changes) and reads the member's current role.
async fn lock_member(
    conn: &mut PgConnection,
    workspace_id: i64,
    user_id: i64,
) -> Result<(Role, i64), MemberError> {
    sqlx::query("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE")
        .bind(workspace_id)
        .execute(&mut *conn)
        .await
        .context("locking a workspace")?;
    let row: Option<(Role, i64)> = sqlx::query_as(
        "SELECT role, (SELECT count(*) FROM memberships
                       WHERE workspace_id = $1 AND role = 'owner')
         FROM memberships WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await
    .context("reading a member")?;
    row.ok_or(MemberError::NotFound)
}

/// Changes a member's role. Admins change admins and viewers up to their own role; only owners
/// make or unmake owners; the last owner stays one.
pub async fn change_role(
    pool: &PgPool,
    by: &Principal,
    user_id: i64,
    role: Role,
) -> Result<(), MemberError> {
    by.require(Role::Admin)?;
    not_maintenance(pool, by).await?;
    let mut tx = pool.begin().await.context("starting a role change")?;
    let (had, owners) = lock_member(&mut tx, by.workspace_id, user_id).await?;
    by.require(had.max(role))?;
    if had == role {
        return Ok(());
    }
    if had == Role::Owner && owners <= 1 {
        return Err(MemberError::LastOwner);
    }
    sqlx::query("UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
        .bind(by.workspace_id)
        .bind(user_id)
        .bind(role)
        .execute(&mut *tx)
        .await
        .context("changing a role")?;
    activity::record(
        &mut *tx,
        user_id,
        Some(by.workspace_id),
        EventKind::RoleChanged,
        &Origin::default(),
    )
    .await?;
    let at_ms: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        .fetch_one(&mut *tx)
        .await
        .context("reading the time")?;
    alerts::alert(
        &mut *tx,
        AccountAlert::RoleChanged {
            workspace_id: by.workspace_id,
            user_id,
            at_ms,
        },
    )
    .await?;
    tx.commit().await.context("committing a role change")?;
    Ok(())
}

/// Removes a member (their tokens stop working at once: authentication needs the membership).
/// Admins remove admins and viewers; only owners remove owners; the last owner stays.
pub async fn remove(pool: &PgPool, by: &Principal, user_id: i64) -> Result<(), MemberError> {
    by.require(Role::Admin)?;
    not_maintenance(pool, by).await?;
    let mut tx = pool.begin().await.context("starting a removal")?;
    let (had, owners) = lock_member(&mut tx, by.workspace_id, user_id).await?;
    by.require(had)?;
    if had == Role::Owner && owners <= 1 {
        return Err(MemberError::LastOwner);
    }
    sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
        .bind(by.workspace_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .context("removing a member")?;
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(by.workspace_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await
    .context("revoking a removed member's tokens")?;
    activity::record(
        &mut *tx,
        user_id,
        Some(by.workspace_id),
        EventKind::MemberRemoved,
        &Origin::default(),
    )
    .await?;
    tx.commit().await.context("committing a removal")?;
    Ok(())
}
