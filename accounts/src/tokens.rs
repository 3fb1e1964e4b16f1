//! Personal API tokens: for members who choose no cookies, and for their scripts. A token acts
//! in one workspace with a role no higher than its owner's there, expires (`accounts.token_days`
//! unless its creator says otherwise), and is checked on every request — so a revoked token, a
//! removed member or a cancelled workspace is refused from the next request on, and a member
//! whose role is lowered takes their tokens down with them.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::secret;
use crate::{Principal, Role, Via, workspaces};

/// Marks our API tokens, so a leaked one is recognisable in a secret scanner.
pub const PREFIX: &str = "me_";

/// A token just created: shown once, never again.
#[derive(Debug)]
pub struct NewToken {
    /// `api_tokens.id`, to list and revoke it.
    pub id: i64,
    /// The bearer token.
    pub token: SecretString,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The creator is not a member of the workspace.
    #[error("not a member of this workspace")]
    NotAMember,
    /// The role asked for is above the creator's own.
    #[error("a token cannot have a role above yours ({has})")]
    AboveOwnRole {
        /// The creator's role.
        has: Role,
    },
    /// The lifetime is not between one day and `accounts.token_max_days`.
    #[error("a token lives between 1 and {max} days")]
    Lifetime {
        /// The longest lifetime allowed.
        max: i64,
    },
    /// The name is empty or longer than 200 characters.
    #[error("a token needs a name of 1 to 200 characters")]
    Name,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The workspace it acts in.
    pub workspace_id: i64,
    /// Whose token it is.
    pub user_id: i64,
    /// What it is for, for the owner's list.
    pub name: &'a str,
    /// Its role: at most the user's own.
    pub role: Role,
    /// Days until it expires.
    pub days: i64,
    /// The longest lifetime allowed (`accounts.token_max_days`).
    pub max_days: i64,
}

/// Creates a token, holding it to its owner's role. Give it the transaction of the change: the
/// caller records the event and queues the alert in the same one.
pub async fn create(
    conn: &mut PgConnection,
    request: Request<'_>,
) -> Result<NewToken, CreateError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(CreateError::Name);
    }
    if request.days < 1 || request.days > request.max_days {
        return Err(CreateError::Lifetime {
            max: request.max_days,
        });
    }
    let has = workspaces::role_of(&mut *conn, request.workspace_id, request.user_id)
        .await?
        .ok_or(CreateError::NotAMember)?;
    if request.role > has {
        return Err(CreateError::AboveOwnRole { has });
    }
    let minted = secret::mint(PREFIX);
    let (id, expires_at) = sqlx::query_as(
        "INSERT INTO api_tokens (workspace_id, user_id, name, role, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6))
         RETURNING id, expires_at",
    )
    .bind(request.workspace_id)
    .bind(request.user_id)
    .bind(name)
    .bind(request.role)
    .bind(&minted.hash)
    .bind(i32::try_from(request.days).unwrap_or(i32::MAX))
    .fetch_one(&mut *conn)
    .await
    .context("creating an API token")?;
    Ok(NewToken {
        id,
        token: minted.secret,
        expires_at,
    })
}

/// The principal a presented token acts as, or `None` when it is unknown, expired, revoked,
/// of a cancelled workspace, or its user is no longer a member. Marks it used. A maintenance
/// token (bound to a grant) works while its grant is live and its user is an operator, as an
/// admin at most; each use goes into the owners' activity, and the first queues their alert.
pub async fn authenticate(
    pool: &PgPool,
    token: &SecretString,
) -> anyhow::Result<Option<Principal>> {
    let row: Option<Presented> = sqlx::query_as(
        "UPDATE api_tokens t SET last_used_at = now()
         FROM workspaces w, users holder
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()
           AND w.id = t.workspace_id AND w.cancelled_at IS NULL AND holder.id = t.user_id
           AND CASE WHEN t.grant_id IS NULL THEN EXISTS (
                    SELECT 1 FROM memberships m
                    WHERE m.workspace_id = t.workspace_id AND m.user_id = t.user_id)
               ELSE EXISTS (
                    SELECT 1 FROM maintenance_grants g JOIN users u ON u.id = g.operator_id
                    WHERE g.id = t.grant_id AND g.workspace_id = t.workspace_id
                      AND g.operator_id = t.user_id AND u.is_operator
                      AND g.revoked_at IS NULL AND g.expires_at > now())
               END
         RETURNING t.id, t.user_id, t.workspace_id, t.role AS token_role, t.grant_id,
             CASE WHEN t.grant_id IS NULL THEN (
                 SELECT m.role FROM memberships m
                 WHERE m.workspace_id = t.workspace_id AND m.user_id = t.user_id)
             ELSE 'admin' END AS member_role,
             holder.is_operator AS operator",
    )
    .bind(secret::hash_secret(token))
    .fetch_optional(pool)
    .await
    .context("checking an API token")?;
    let Some(row) = row else {
        return Ok(None);
    };
    if let Some(grant_id) = row.grant_id {
        record_maintenance_use(pool, row.workspace_id, grant_id).await?;
    }
    Ok(Some(Principal {
        user_id: row.user_id,
        workspace_id: row.workspace_id,
        role: row.token_role.min(row.member_role),
        via: Via::Token(row.id),
        operator: row.operator,
    }))
}

/// A live token as authentication reads it.
#[derive(sqlx::FromRow)]
struct Presented {
    id: i64,
    user_id: i64,
    workspace_id: i64,
    token_role: Role,
    grant_id: Option<i64>,
    member_role: Role,
    operator: bool,
}

/// Puts a use of maintenance access in the owners' activity; the first use also queues their
/// alert (once: `first_used_at` is set in the same transaction).
async fn record_maintenance_use(
    pool: &PgPool,
    workspace_id: i64,
    grant_id: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("recording maintenance use")?;
    activity::record_for_owners(&mut *tx, workspace_id, EventKind::MaintenanceUsed).await?;
    let first: Option<i64> = sqlx::query_scalar(
        "UPDATE maintenance_grants SET first_used_at = now()
         WHERE workspace_id = $1 AND id = $2 AND first_used_at IS NULL RETURNING id",
    )
    .bind(workspace_id)
    .bind(grant_id)
    .fetch_optional(&mut *tx)
    .await
    .context("marking a grant used")?;
    if first.is_some() {
        alerts::alert(
            &mut *tx,
            AccountAlert::MaintenanceUsed {
                workspace_id,
                grant_id,
            },
        )
        .await?;
    }
    tx.commit().await.context("committing maintenance use")?;
    tracing::info!(grant_id, "maintenance access used");
    Ok(())
}

/// A token as its owner's list shows it (never the token itself).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenView {
    /// `api_tokens.id`.
    pub id: i64,
    /// Whose token it is.
    pub user_id: i64,
    /// What it is for.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The live tokens of a user in a workspace, newest first.
pub async fn list(
    pool: &PgPool,
    workspace_id: i64,
    user_id: i64,
) -> anyhow::Result<Vec<TokenView>> {
    sqlx::query_as(
        "SELECT id, user_id, name, role, created_at, expires_at, last_used_at FROM api_tokens
         WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()
         ORDER BY id DESC",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_all(pool)
    .await
    .context("listing API tokens")
}

/// Revokes a live token of the workspace; `Some(owner's user id)` when one was revoked. Who may
/// revoke whose token is the caller's rule.
pub async fn revoke<'e>(
    executor: impl PgExecutor<'e>,
    workspace_id: i64,
    id: i64,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING user_id",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(executor)
    .await
    .context("revoking an API token")
}
