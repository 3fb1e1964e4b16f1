//! Cancelling a workspace: "complete deletion on account cancellation". An owner confirms with
//! the workspace's name; from that moment nobody gets in (authentication refuses a cancelled
//! workspace) and a `workspace_cancel` job (payload: the workspace id) deletes everything of it
//! in bounded batches, resumable after a crash, then e-mails the former owners a confirmation
//! and deletes the workspace with the users who belong to no other one.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use moonengage_queue::{Job, jobs};

use crate::activity::{self, EventKind};
use crate::origin::Origin;
use crate::{Forbidden, Principal, Role};

/// The deletion of a cancelled workspace (kind `workspace_cancel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelJob {
    /// `workspaces.id`.
    pub workspace_id: i64,
}

impl Job for CancelJob {
    const KIND: &'static str = "workspace_cancel";

    /// The deletion must finish: every step is idempotent, so it retries until it does.
    const MAX_ATTEMPTS: Option<i32> = Some(i32::MAX);

    fn key(&self) -> String {
        self.workspace_id.to_string()
    }
}

/// Why a cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// Only owners cancel.
    #[error(transparent)]
    Role(#[from] Forbidden),
    /// The confirmation is not the workspace's name.
    #[error("to cancel, confirm with the workspace's exact name")]
    Confirmation,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Cancels the principal's workspace, confirmed with its name: marks it cancelled (access ends
/// at once), records `CancellationRequested` (from `origin`) and queues its deletion, in one
/// transaction.
pub async fn request(
    pool: &PgPool,
    by: &Principal,
    confirm: &str,
    origin: &Origin,
) -> Result<(), CancelError> {
    by.require(Role::Owner)?;
    let mut tx = pool.begin().await.context("starting a cancellation")?;
    let cancelled: Option<i64> = sqlx::query_scalar(
        "UPDATE workspaces SET cancelled_at = now()
         WHERE id = $1 AND cancelled_at IS NULL AND name = btrim($2) RETURNING id",
    )
    .bind(by.workspace_id)
    .bind(confirm)
    .fetch_optional(&mut *tx)
    .await
    .context("cancelling a workspace")?;
    cancelled.ok_or(CancelError::Confirmation)?;
    activity::record(
        &mut *tx,
        by.user_id,
        Some(by.workspace_id),
        EventKind::CancellationRequested,
        origin,
    )
    .await?;
    let job = CancelJob {
        workspace_id: by.workspace_id,
    };
    jobs::enqueue(&mut *tx, &job, i32::MAX).await?;
    tx.commit().await.context("committing a cancellation")?;
    Ok(())
}
