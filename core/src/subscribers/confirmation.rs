//! The confirmation an unsubscribe owes the person (`subscribers.unsubscribe_confirmation_owed`,
//! set with the confirmation job in the unsubscribe's transaction): claimed in its own commit
//! before it is sent, so a job run again after its worker died never confirms twice.

use anyhow::Context as _;
use sqlx::PgExecutor;

/// Owes the person a confirmation: run in the unsubscribe's transaction that queues its job.
pub async fn owe(executor: impl PgExecutor<'_>, subscriber_id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE subscribers SET unsubscribe_confirmation_owed = true WHERE id = $1")
        .bind(subscriber_id)
        .execute(executor)
        .await
        .context("owing an unsubscribe's confirmation")?;
    Ok(())
}

/// Claims the confirmation an unsubscribe owes the person, in its own commit before it is sent:
/// true when this run may send it, false when it went (or may have) or is owed no more.
pub async fn claim(executor: impl PgExecutor<'_>, subscriber_id: i64) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "UPDATE subscribers SET unsubscribe_confirmation_owed = false
         WHERE id = $1 AND unsubscribe_confirmation_owed",
    )
    .bind(subscriber_id)
    .execute(executor)
    .await
    .context("claiming an unsubscribe's confirmation")?;
    Ok(claimed.rows_affected() == 1)
}

/// Gives the claim of [`claim`] back after a send that certainly did not reach
/// the person, so a retry may tell them.
pub async fn release(executor: impl PgExecutor<'_>, subscriber_id: i64) -> anyhow::Result<()> {
    owe(executor, subscriber_id).await
}
