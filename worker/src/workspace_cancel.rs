//! The cancellation job: deletes everything of a cancelled workspace (see
//! `moonengage_accounts::cancellation`). Each step deletes in batches of `BATCH` rows until
//! none is left, so no statement holds locks on millions of rows, and every step is idempotent:
//! a crash or a retry resumes where the deletion stood. The order keeps what the last steps need
//! until they run — the owners' memberships, read for the confirmation e-mail, which is sent
//! before the final transaction deletes the workspace, its memberships and the users who belong
//! to no other workspace. A retry after a failed e-mail may send it twice, never zero times.

use anyhow::Context as _;
use moonengage_accounts::cancellation::CancelJob;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;

/// Rows per deleting statement.
const BATCH: i64 = 5_000;

/// Batched deletions, in order: deliveries and tallies first (the largest), then subscribers
/// (taking their jobs, exports and notices by cascade), then what hangs on Pages, then Pages.
/// Each deletes up to `$2` rows of workspace `$1`.
const STEPS: &[(&str, &str)] = &[
    (
        "webhook events",
        "DELETE FROM webhook_events WHERE id IN (
             SELECT e.id FROM webhook_events e JOIN pages p ON p.fb_page_id = e.page_fb_id
             WHERE p.workspace_id = $1 LIMIT $2)",
    ),
    (
        "deliveries",
        "DELETE FROM deliveries WHERE ctid = ANY (ARRAY(
             SELECT d.ctid FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
             WHERE c.workspace_id = $1 LIMIT $2))",
    ),
    (
        "campaign tallies",
        "DELETE FROM campaign_tallies WHERE ctid = ANY (ARRAY(
             SELECT t.ctid FROM campaign_tallies t JOIN campaigns c ON c.id = t.campaign_id
             WHERE c.workspace_id = $1 LIMIT $2))",
    ),
    (
        "queued work",
        "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j
             WHERE j.kind <> 'workspace_cancel' AND (
                 (j.payload->>'workspace_id')::bigint = $1
                 OR (j.payload->>'page_id')::bigint IN (SELECT id FROM pages WHERE workspace_id = $1)
                 OR (j.payload->>'campaign_id')::bigint IN
                     (SELECT id FROM campaigns WHERE workspace_id = $1)
                 OR (j.payload->>'request_id')::bigint IN
                     (SELECT id FROM dsr_requests WHERE workspace_id = $1)
                 OR (j.kind = 'invitation' AND (j.payload->>'invitation_id')::bigint IN
                     (SELECT id FROM invitations WHERE workspace_id = $1)))
             LIMIT $2)",
    ),
    (
        "subscribers",
        "DELETE FROM subscribers WHERE id IN (
             SELECT id FROM subscribers WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "suppressions",
        "DELETE FROM suppressions WHERE ctid = ANY (ARRAY(
             SELECT s.ctid FROM suppressions s JOIN pages p ON p.id = s.page_id
             WHERE p.workspace_id = $1 LIMIT $2))",
    ),
    (
        "data-subject requests",
        "DELETE FROM dsr_requests WHERE id IN (
             SELECT id FROM dsr_requests WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "campaigns",
        "DELETE FROM campaigns WHERE id IN (
             SELECT id FROM campaigns WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "pages",
        "DELETE FROM pages WHERE id IN (SELECT id FROM pages WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "api tokens",
        "DELETE FROM api_tokens WHERE id IN (
             SELECT id FROM api_tokens WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "invitations",
        "DELETE FROM invitations WHERE id IN (
             SELECT id FROM invitations WHERE workspace_id = $1 LIMIT $2)",
    ),
    (
        "account events",
        "DELETE FROM account_events WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM account_events WHERE workspace_id = $1 LIMIT $2))",
    ),
];

impl Run<Env> for CancelJob {
    /// One deletion at a time per worker: it is heavy and nobody waits on it.
    const CONCURRENCY: Option<usize> = Some(1);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        let id = self.workspace_id;
        let cancelled: Option<Option<chrono::DateTime<chrono::Utc>>> =
            sqlx::query_scalar("SELECT cancelled_at FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(&env.pool)
                .await
                .context("reading a workspace to delete")?;
        match cancelled {
            None => return Ok(()),
            Some(None) => return Err(JobError::Fatal("the workspace is not cancelled".into())),
            Some(Some(_)) => {}
        }
        for (what, sql) in STEPS {
            let n = delete_all(&env.pool, sql, id).await.context(*what)?;
            tracing::info!(
                workspace_id = id,
                rows = n,
                step = *what,
                "workspace deletion step"
            );
        }
        confirm(env, id).await?;
        finish(&env.pool, id).await?;
        tracing::info!(workspace_id = id, "cancelled workspace deleted");
        Ok(())
    }
}

/// Runs one batched step until it deletes nothing more; returns the rows deleted.
async fn delete_all(pool: &PgPool, sql: &'static str, workspace_id: i64) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// E-mails the owners (still members until [`finish`]) that their workspace and its data are
/// deleted. With no SMTP server configured nothing is sent.
async fn confirm(env: &Env, workspace_id: i64) -> Result<(), JobError> {
    let Some(mailer) = &env.mailer else {
        return Ok(());
    };
    let (name, owners): (String, Vec<String>) = {
        let name: String = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_one(&env.pool)
            .await
            .context("reading a workspace's name")?;
        let owners = sqlx::query_scalar(
            "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = $1 AND m.role = 'owner' ORDER BY u.id",
        )
        .bind(workspace_id)
        .fetch_all(&env.pool)
        .await
        .context("reading a workspace's owners")?;
        (name, owners)
    };
    let subject = format!("[MoonEngage] Workspace \"{name}\" is cancelled and deleted");
    let body = format!(
        "As an owner asked, the MoonEngage workspace \"{name}\" is cancelled. Everything of it \
         is deleted: its Pages, subscribers, campaigns and their deliveries, queued work, \
         webhook events, data-subject requests and exports, API tokens, sessions, invitations \
         and maintenance grants, its members' account activity, and the accounts of members \
         who belong to no other workspace.\n\nNothing of it can be restored. If you did not \
         ask for this, reply to this e-mail.\n"
    );
    for owner in &owners {
        if let Err(error) = mailer.send_to(owner, &subject, body.clone()).await {
            return Err(JobError::Retry {
                after: None,
                spend_attempt: true,
                reason: format!("smtp: {error}"),
            });
        }
    }
    Ok(())
}

/// The last step, in one transaction: the workspace row (its memberships, grants and anything
/// left go by cascade) and the users who were its members and belong to no other workspace.
async fn finish(pool: &PgPool, workspace_id: i64) -> anyhow::Result<()> {
    let mut tx = pool
        .begin()
        .await
        .context("starting the last deletion step")?;
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM memberships WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_all(&mut *tx)
            .await
            .context("reading the members")?;
    sqlx::query("DELETE FROM workspaces WHERE id = $1")
        .bind(workspace_id)
        .execute(&mut *tx)
        .await
        .context("deleting the workspace")?;
    let users = sqlx::query(
        "DELETE FROM users u WHERE u.id = ANY($1) AND NOT u.is_operator
           AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id)",
    )
    .bind(&members)
    .execute(&mut *tx)
    .await
    .context("deleting users of no other workspace")?
    .rows_affected();
    tx.commit()
        .await
        .context("committing the last deletion step")?;
    tracing::info!(workspace_id, users, "workspace and its own users deleted");
    Ok(())
}
