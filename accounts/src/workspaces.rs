//! Workspaces and their members. A workspace is what a business signs up as: it owns Pages and
//! everything of them, and its members act in it with a [`Role`].

use anyhow::Context as _;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::Role;
use crate::users;

/// A workspace just created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// `workspaces.id`.
    pub workspace_id: i64,
    /// The owner's `users.id`.
    pub owner_id: i64,
    /// Whether the owner's user is new (and so has no password yet).
    pub new_user: bool,
}

/// Creates a workspace named `name` owned by the user with `owner_email` (created when new).
pub async fn create(pool: &PgPool, name: &str, owner_email: &str) -> anyhow::Result<Created> {
    let mut tx = pool
        .begin()
        .await
        .context("starting to create a workspace")?;
    let workspace_id: i64 =
        sqlx::query_scalar("INSERT INTO workspaces (name) VALUES ($1) RETURNING id")
            .bind(name.trim())
            .fetch_one(&mut *tx)
            .await
            .context("creating a workspace")?;
    let (owner_id, new_user) = users::find_or_create(&mut *tx, owner_email).await?;
    set_member(&mut tx, workspace_id, owner_id, Role::Owner).await?;
    tx.commit().await.context("committing a new workspace")?;
    Ok(Created {
        workspace_id,
        owner_id,
        new_user,
    })
}

/// Makes `user_id` a member of the workspace with `role`, or changes their role. Returns the
/// role they had before, if any.
pub async fn set_member(
    conn: &mut PgConnection,
    workspace_id: i64,
    user_id: i64,
    role: Role,
) -> anyhow::Result<Option<Role>> {
    let before = role_of(&mut *conn, workspace_id, user_id).await?;
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role)
    .execute(&mut *conn)
    .await
    .context("setting a membership")?;
    Ok(before)
}

/// The user's role in a live (not cancelled) workspace, or `None` when they are not a member.
pub async fn role_of<'e>(
    executor: impl PgExecutor<'e>,
    workspace_id: i64,
    user_id: i64,
) -> anyhow::Result<Option<Role>> {
    sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
         WHERE m.workspace_id = $1 AND m.user_id = $2 AND w.cancelled_at IS NULL",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(executor)
    .await
    .context("reading a membership")
}

/// The workspace's name: what a cancellation must be confirmed with.
pub async fn name(pool: &PgPool, workspace_id: i64) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
        .bind(workspace_id)
        .fetch_one(pool)
        .await
        .context("reading a workspace's name")
}

/// A member as the workspace's member list shows them.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Member {
    /// `users.id`.
    pub user_id: i64,
    /// Their login e-mail: members see who they share the workspace with.
    pub email: String,
    /// Their role here.
    pub role: Role,
    /// When they joined.
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

/// The workspace's members, owners first, then by e-mail.
pub async fn members(pool: &PgPool, workspace_id: i64) -> anyhow::Result<Vec<Member>> {
    sqlx::query_as(
        "SELECT u.id AS user_id, u.email, m.role, m.created_at AS joined_at
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, u.email",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .context("listing a workspace's members")
}
