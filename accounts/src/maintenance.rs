//! Maintenance access: credentials only for temporary maintenance. An owner grants a named
//! operator (a `users.is_operator` user, MoonEngage staff) access for a limited time, with a
//! reason; the operator gets a token bound to the grant ([`token`]), which works as an admin at
//! most and only while the grant is live (see `tokens::authenticate`, which also puts every use
//! in the owners' activity). Owners are e-mailed when access is granted, first used and ended —
//! revoked at once by [`revoke`], or ran out, told once by [`end_expired`] (the leader's check).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::tokens::{NewToken, PREFIX};
use crate::users::normalize_email;
use crate::{Forbidden, Principal, Role, Via, secret};

/// The longest grant an owner may give (hours): maintenance is temporary by definition.
pub const MAX_HOURS: i64 = 168;

/// Why a grant, its token or its revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Only owners grant and revoke.
    #[error(transparent)]
    Role(#[from] Forbidden),
    /// The e-mail is not an operator's.
    #[error("no MoonEngage operator has this e-mail address")]
    NotAnOperator,
    /// The duration is out of bounds.
    #[error("a grant lasts between 1 and {MAX_HOURS} hours")]
    Hours,
    /// The reason is empty or too long.
    #[error("a grant needs a reason of 1 to 500 characters")]
    Reason,
    /// No such live grant (for this workspace, or this operator).
    #[error("no such live maintenance grant")]
    NotFound,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A grant as owners see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Grant {
    /// The grant's id.
    pub id: i64,
    /// The operator's e-mail.
    pub operator_email: String,
    /// Why it was given.
    pub reason: String,
    /// When it was given.
    pub created_at: DateTime<Utc>,
    /// When it runs out.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the operator first used it.
    pub first_used_at: Option<DateTime<Utc>>,
}

/// What an owner grants.
#[derive(Debug, Clone, Copy)]
pub struct NewGrant<'a> {
    /// The operator's e-mail.
    pub operator_email: &'a str,
    /// How long (hours).
    pub hours: i64,
    /// Why.
    pub reason: &'a str,
}

/// Grants an operator maintenance access to the owner's workspace; returns the grant.
pub async fn grant(pool: &PgPool, by: &Principal, new: NewGrant<'_>) -> Result<Grant, GrantError> {
    by.require(Role::Owner)?;
    if !(1..=MAX_HOURS).contains(&new.hours) {
        return Err(GrantError::Hours);
    }
    let reason = new.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(GrantError::Reason);
    }
    let email = normalize_email(new.operator_email).map_err(|_| GrantError::NotAnOperator)?;
    let mut tx = pool.begin().await.context("starting a grant")?;
    let granted: Option<Grant> = sqlx::query_as(
        "INSERT INTO maintenance_grants
             (workspace_id, operator_id, granted_by, reason, expires_at)
         SELECT $1, u.id, $2, $3, now() + make_interval(hours => $4)
         FROM users u WHERE u.email = $5 AND u.is_operator
         RETURNING id, $5 AS operator_email, reason, created_at, expires_at, revoked_at,
             first_used_at",
    )
    .bind(by.workspace_id)
    .bind(by.user_id)
    .bind(reason)
    .bind(i32::try_from(new.hours).unwrap_or(i32::MAX))
    .bind(&email)
    .fetch_optional(&mut *tx)
    .await
    .context("granting maintenance access")?;
    let granted = granted.ok_or(GrantError::NotAnOperator)?;
    activity::record_for_owners(&mut *tx, by.workspace_id, EventKind::MaintenanceGranted).await?;
    let alert = AccountAlert::MaintenanceGranted {
        workspace_id: by.workspace_id,
        grant_id: granted.id,
    };
    alerts::alert(&mut *tx, alert).await?;
    tx.commit().await.context("committing a grant")?;
    Ok(granted)
}

/// Whether the principal acts through maintenance access (a token bound to a grant): such a
/// principal may not change who belongs to the workspace, so a grant cannot outlive itself.
pub async fn is_maintenance(pool: &PgPool, principal: &Principal) -> anyhow::Result<bool> {
    let Via::Token(token_id) = principal.via else {
        return Ok(false);
    };
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE id = $1 AND grant_id IS NOT NULL)",
    )
    .bind(token_id)
    .fetch_one(pool)
    .await
    .context("reading a token's grant")
}

/// The workspace's grants, newest first.
pub async fn list(pool: &PgPool, workspace_id: i64) -> anyhow::Result<Vec<Grant>> {
    sqlx::query_as(
        "SELECT g.id, u.email AS operator_email, g.reason, g.created_at, g.expires_at,
             g.revoked_at, g.first_used_at
         FROM maintenance_grants g JOIN users u ON u.id = g.operator_id
         WHERE g.workspace_id = $1 ORDER BY g.id DESC",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .context("listing maintenance grants")
}

/// Revokes a live grant at once (its tokens stop working from the next request) and tells
/// the owners.
pub async fn revoke(pool: &PgPool, by: &Principal, grant_id: i64) -> Result<(), GrantError> {
    by.require(Role::Owner)?;
    let mut tx = pool.begin().await.context("starting a revocation")?;
    let revoked: Option<i64> = sqlx::query_scalar(
        "UPDATE maintenance_grants SET revoked_at = now(), ended_notified_at = now()
         WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL
           AND ended_notified_at IS NULL AND expires_at > now()
         RETURNING id",
    )
    .bind(by.workspace_id)
    .bind(grant_id)
    .fetch_optional(&mut *tx)
    .await
    .context("revoking a grant")?;
    revoked.ok_or(GrantError::NotFound)?;
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE grant_id = $1 AND revoked_at IS NULL",
    )
    .bind(grant_id)
    .execute(&mut *tx)
    .await
    .context("revoking a grant's tokens")?;
    ended(&mut tx, by.workspace_id, grant_id).await?;
    tx.commit().await.context("committing a revocation")?;
    Ok(())
}

/// Records and alerts the end of a grant, in the caller's transaction.
async fn ended(
    tx: &mut sqlx::PgConnection,
    workspace_id: i64,
    grant_id: i64,
) -> anyhow::Result<()> {
    activity::record_for_owners(&mut *tx, workspace_id, EventKind::MaintenanceEnded).await?;
    let alert = AccountAlert::MaintenanceEnded {
        workspace_id,
        grant_id,
    };
    alerts::alert(&mut *tx, alert).await?;
    Ok(())
}

/// Marks every grant that ran out and was not announced yet, and tells its owners, in one
/// transaction (so each is told once). Returns the grants' ids.
pub async fn end_expired(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool.begin().await.context("starting the expiry check")?;
    let ended_now: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE maintenance_grants SET ended_notified_at = now()
         WHERE ended_notified_at IS NULL AND expires_at <= now()
         RETURNING workspace_id, id",
    )
    .fetch_all(&mut *tx)
    .await
    .context("finding grants that ran out")?;
    for &(workspace_id, grant_id) in &ended_now {
        ended(&mut tx, workspace_id, grant_id).await?;
    }
    tx.commit().await.context("committing the expiry check")?;
    Ok(ended_now.into_iter().map(|(_, id)| id).collect())
}

/// Issues the operator named on a live grant a token bound to it: role admin, expiring with
/// the grant. For `moonengage maintenance token` (operators work from MoonEngage's side).
pub async fn token(
    pool: &PgPool,
    grant_id: i64,
    operator_email: &str,
) -> Result<NewToken, GrantError> {
    let email = normalize_email(operator_email).map_err(|_| GrantError::NotFound)?;
    let minted = secret::mint(PREFIX);
    let row: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO api_tokens
             (workspace_id, user_id, name, role, token_hash, expires_at, grant_id)
         SELECT g.workspace_id, g.operator_id, 'maintenance grant #' || g.id, 'admin', $3,
             g.expires_at, g.id
         FROM maintenance_grants g JOIN users u ON u.id = g.operator_id
         WHERE g.id = $1 AND u.email = $2 AND u.is_operator
           AND g.revoked_at IS NULL AND g.expires_at > now()
         RETURNING id, expires_at",
    )
    .bind(grant_id)
    .bind(&email)
    .bind(&minted.hash)
    .fetch_optional(pool)
    .await
    .context("issuing a maintenance token")?;
    let (id, expires_at) = row.ok_or(GrantError::NotFound)?;
    Ok(NewToken {
        id,
        token: minted.secret,
        expires_at,
    })
}
