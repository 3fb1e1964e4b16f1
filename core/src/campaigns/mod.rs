//! Campaigns: creation (with the template validated up front), scheduling and live progress.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_queue::sends;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::template::{Template, TemplateError};

mod state;

pub use state::CampaignState;

/// Why a campaign cannot be created or scheduled.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The template is broken; the message says how.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// No campaign (or Page) with that id.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The campaign is not in a state that allows this.
    #[error("campaign is {0}")]
    WrongState(CampaignState),
    /// The campaign's Page is halted: nothing can be sent from it until the Page is resumed,
    /// which resumes the campaigns its halt paused.
    #[error(
        "the campaign's Page #{page_id} is halted ({reason}): fix its token or permissions and \
         resume the Page (POST /api/v1/pages/{page_id}/resume), which resumes the campaigns its \
         halt paused"
    )]
    PageHalted {
        /// The halted Page.
        page_id: i64,
        /// Why Facebook refused it.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a campaign is created from.
#[derive(Debug, Clone, Copy)]
pub struct NewCampaign<'a> {
    /// The workspace creating it: the Page must be one of its own.
    pub workspace_id: i64,
    /// The Page it is sent from.
    pub page_id: i64,
    /// Name shown to admins.
    pub name: &'a str,
    /// Its handlebars template.
    pub template: &'a str,
}

/// Creates a draft campaign for a Page of the workspace after checking its template renders
/// for anyone, with a name or without (see [`Template::validate`]); another workspace's Page is
/// [`CampaignError::NotFound`].
pub async fn create(pool: &PgPool, new: &NewCampaign<'_>) -> Result<i64, CampaignError> {
    let page_name: String =
        sqlx::query_scalar("SELECT name FROM pages WHERE workspace_id = $1 AND id = $2")
            .bind(new.workspace_id)
            .bind(new.page_id)
            .fetch_optional(pool)
            .await?
            .ok_or(CampaignError::NotFound("page"))?;
    Template::validate(new.template, &page_name)?;
    sqlx::query_scalar(
        "INSERT INTO campaigns (workspace_id, page_id, name, template)
         SELECT workspace_id, id, $3, $4 FROM pages WHERE workspace_id = $1 AND id = $2
         RETURNING id",
    )
    .bind(new.workspace_id)
    .bind(new.page_id)
    .bind(new.name)
    .bind(new.template)
    .fetch_optional(pool)
    .await?
    .ok_or(CampaignError::NotFound("page"))
}

/// Schedules a draft campaign of the workspace; the scheduler leader starts it once `at` has
/// passed.
pub async fn schedule(
    pool: &PgPool,
    workspace_id: i64,
    id: i64,
    at: DateTime<Utc>,
) -> Result<(), CampaignError> {
    let state: Option<CampaignState> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    match state {
        None => Err(CampaignError::NotFound("campaign")),
        Some(CampaignState::Draft | CampaignState::Scheduled) => {
            sqlx::query(
                "UPDATE campaigns SET state = 'scheduled', scheduled_at = $2
                 WHERE id = $1 AND state IN ('draft', 'scheduled')",
            )
            .bind(id)
            .bind(at)
            .execute(pool)
            .await?;
            Ok(())
        }
        Some(other) => Err(CampaignError::WrongState(other)),
    }
}

/// A campaign's state and counters.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Progress {
    /// Campaign id.
    pub id: i64,
    /// Where it is in its life.
    pub state: CampaignState,
    /// Whether every recipient has been turned into a job or a skip.
    pub fanout_done: bool,
    /// People the campaign addressed so far (grows during fan-out).
    pub recipients: i64,
    /// Messages Facebook accepted.
    pub sent: i64,
    /// People not messaged, with a recorded reason.
    pub skipped: i64,
    /// Sends that failed for good.
    pub failed: i64,
    /// Sends whose outcome is unknown (never resent).
    pub unknown: i64,
}

impl Progress {
    /// Recipients with a final outcome.
    pub fn finished(&self) -> i64 {
        self.sent + self.skipped + self.failed + self.unknown
    }
}

/// Reads the progress of a campaign of the workspace: its counters plus the counts workers
/// appended since the scheduler last folded them (`campaign_totals`), so reading costs the same
/// for ten recipients or a million.
pub async fn progress(
    pool: &PgPool,
    workspace_id: i64,
    id: i64,
) -> anyhow::Result<Option<Progress>> {
    sqlx::query_as(
        "SELECT id, state, fanout_done, recipients::bigint AS recipients, sent::bigint AS sent,
                skipped::bigint AS skipped, failed::bigint AS failed, unknown::bigint AS unknown
         FROM campaign_totals WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading campaign progress")
}

/// Who paused a campaign (`campaigns.paused_by`: `admin` or `page_halt`): resuming a Page
/// restarts only what its halt paused, never a campaign an admin paused on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PausedBy {
    /// An admin, through the API or the CLI.
    Admin,
    /// The halt of its Page (Facebook refused the Page for good).
    PageHalt,
}

/// Pauses a running (or scheduled) campaign of the workspace at an admin's request. No row
/// moves: workers claim only from running campaigns, and a send already claimed sees the state
/// and goes back to the queue unsent.
pub async fn pause(pool: &PgPool, workspace_id: i64, id: i64) -> Result<(), CampaignError> {
    let mut conn = pool.acquire().await?;
    transition(
        &mut conn,
        (workspace_id, id),
        &[CampaignState::Running, CampaignState::Scheduled],
        CampaignState::Paused,
        Some(PausedBy::Admin),
    )
    .await
}

/// Pauses every running or scheduled campaign of a Page that was just halted, recording the
/// halt as the reason; returns their ids.
pub async fn pause_for_halt(conn: &mut PgConnection, page_id: i64) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE campaigns SET state = 'paused', paused_by = $2
         WHERE page_id = $1 AND state IN ('running', 'scheduled') RETURNING id",
    )
    .bind(page_id)
    .bind(PausedBy::PageHalt)
    .fetch_all(&mut *conn)
    .await
    .context("pausing the campaigns of a halted Page")
}

/// Pauses a running campaign whose template does not render at send time (one created before
/// templates were checked for people without a name), so no delivery is spent on it; an admin
/// cancels it, or resumes it once that can work (so it counts as paused for an admin).
pub async fn pause_unrenderable(pool: &PgPool, id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE campaigns SET state = 'paused', paused_by = $2 WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(PausedBy::Admin)
    .execute(pool)
    .await
    .context("pausing a campaign whose template does not render")?;
    Ok(())
}

/// Resumes a paused campaign of the workspace at an admin's request: its queued sends become
/// due again, paced at the Page's send rate so the resumed campaign does not crowd out other
/// Pages. Nobody is messaged twice: each delivery row is claimed once. A campaign of a halted
/// Page stays paused (nothing is touched): the Page must be resumed first.
pub async fn resume(pool: &PgPool, workspace_id: i64, id: i64) -> Result<(), CampaignError> {
    let mut tx = pool.begin().await?;
    let page: Option<(i64, bool, Option<String>)> = sqlx::query_as(
        "SELECT p.id, p.status = 'halted', p.halted_reason
         FROM campaigns c JOIN pages p ON p.workspace_id = c.workspace_id AND p.id = c.page_id
         WHERE c.workspace_id = $1 AND c.id = $2 FOR SHARE OF p",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match page {
        None => return Err(CampaignError::NotFound("campaign")),
        Some((page_id, true, reason)) => {
            return Err(CampaignError::PageHalted {
                page_id,
                reason: reason.unwrap_or_else(|| "no reason recorded".into()),
            });
        }
        Some(_) => {}
    }
    restart(&mut tx, (workspace_id, id)).await?;
    tx.commit().await?;
    Ok(())
}

/// Resumes the campaigns of a Page that its halt paused (the Page was just resumed, in the same
/// transaction); those an admin paused stay paused. Returns their ids.
pub async fn resume_after_halt(conn: &mut PgConnection, page_id: i64) -> anyhow::Result<Vec<i64>> {
    let paused: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT workspace_id, id FROM campaigns
         WHERE page_id = $1 AND state = 'paused' AND paused_by = $2 FOR UPDATE",
    )
    .bind(page_id)
    .bind(PausedBy::PageHalt)
    .fetch_all(&mut *conn)
    .await
    .context("finding the campaigns a halt paused")?;
    for campaign in &paused {
        restart(conn, *campaign)
            .await
            .context("resuming a campaign a halt paused")?;
    }
    Ok(paused.into_iter().map(|(_, id)| id).collect())
}

/// A campaign named by its workspace and id.
type Scoped = (i64, i64);

/// Moves a paused campaign back to running and re-paces its queued sends.
async fn restart(conn: &mut PgConnection, campaign: Scoped) -> Result<(), CampaignError> {
    transition(
        conn,
        campaign,
        &[CampaignState::Paused],
        CampaignState::Running,
        None,
    )
    .await?;
    sends::repace(conn, campaign.1).await?;
    Ok(())
}

/// Cancels a campaign of the workspace: its queued sends, and everyone not fanned out yet, are
/// recorded as skipped (`cancelled`), so the campaign completes with counters that add up.
/// Sends already under way finish and are recorded as they end.
pub async fn cancel(pool: &PgPool, workspace_id: i64, id: i64) -> Result<(), CampaignError> {
    let mut tx = pool.begin().await?;
    let state: Option<CampaignState> = sqlx::query_scalar(
        "SELECT state FROM campaigns WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    match state {
        None => return Err(CampaignError::NotFound("campaign")),
        Some(done @ (CampaignState::Completed | CampaignState::Cancelled)) => {
            return Err(CampaignError::WrongState(done));
        }
        Some(_) => {}
    }
    sends::cancel(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves a campaign from one of `from` to `to` (recording who paused it, when it is paused),
/// or says why it cannot.
async fn transition(
    conn: &mut PgConnection,
    (workspace_id, id): Scoped,
    from: &[CampaignState],
    to: CampaignState,
    paused_by: Option<PausedBy>,
) -> Result<(), CampaignError> {
    let from: Vec<&str> = from.iter().map(|state| state.as_str()).collect();
    let moved = sqlx::query(
        "UPDATE campaigns SET state = $3, paused_by = $4
         WHERE workspace_id = $5 AND id = $1 AND state = ANY($2)",
    )
    .bind(id)
    .bind(&from)
    .bind(to)
    .bind(paused_by)
    .bind(workspace_id)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    let state: Option<CampaignState> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    Err(match state {
        None => CampaignError::NotFound("campaign"),
        Some(state) => CampaignError::WrongState(state),
    })
}

#[cfg(test)]
mod tests;
