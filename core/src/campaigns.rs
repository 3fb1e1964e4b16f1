//! Campaigns: creation (with the template validated up front), scheduling and live progress.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_queue::sends;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::template::{Template, TemplateError};

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
    WrongState(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a draft campaign for a Page after checking its template renders for anyone, with
/// a name or without (see [`Template::validate`]).
pub async fn create(
    pool: &PgPool,
    page_id: i64,
    name: &str,
    template: &str,
) -> Result<i64, CampaignError> {
    let page_name: String = sqlx::query_scalar("SELECT name FROM pages WHERE id = $1")
        .bind(page_id)
        .fetch_optional(pool)
        .await?
        .ok_or(CampaignError::NotFound("page"))?;
    Template::validate(template, &page_name)?;
    sqlx::query_scalar(
        "INSERT INTO campaigns (page_id, name, template)
         SELECT id, $2, $3 FROM pages WHERE id = $1 RETURNING id",
    )
    .bind(page_id)
    .bind(name)
    .bind(template)
    .fetch_optional(pool)
    .await?
    .ok_or(CampaignError::NotFound("page"))
}

/// Schedules a draft campaign; the scheduler leader starts it once `at` has passed.
pub async fn schedule(pool: &PgPool, id: i64, at: DateTime<Utc>) -> Result<(), CampaignError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match state.as_deref() {
        None => Err(CampaignError::NotFound("campaign")),
        Some("draft" | "scheduled") => {
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
        Some(other) => Err(CampaignError::WrongState(other.into())),
    }
}

/// A campaign's state and counters.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Progress {
    /// Campaign id.
    pub id: i64,
    /// `draft`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
    pub state: String,
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

/// Reads a campaign's progress: its counters plus the counts workers appended since the
/// scheduler last folded them (`campaign_totals`), so reading costs the same for ten
/// recipients or a million.
pub async fn progress(pool: &PgPool, id: i64) -> anyhow::Result<Option<Progress>> {
    sqlx::query_as(
        "SELECT id, state, fanout_done, recipients::bigint AS recipients, sent::bigint AS sent,
                skipped::bigint AS skipped, failed::bigint AS failed, unknown::bigint AS unknown
         FROM campaign_totals WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading campaign progress")
}

/// Pauses a running (or scheduled) campaign. No row moves: workers claim only from running
/// campaigns, and a send already claimed sees the state and goes back to the queue unsent.
pub async fn pause(pool: &PgPool, id: i64) -> Result<(), CampaignError> {
    let mut conn = pool.acquire().await?;
    transition(&mut conn, id, &["running", "scheduled"], "paused").await
}

/// Pauses a running campaign whose template does not render at send time (one created before
/// templates were checked for people without a name), so no delivery is spent on it; an admin
/// cancels it, or resumes it once that can work.
pub async fn pause_unrenderable(pool: &PgPool, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE campaigns SET state = 'paused' WHERE id = $1 AND state = 'running'")
        .bind(id)
        .execute(pool)
        .await
        .context("pausing a campaign whose template does not render")?;
    Ok(())
}

/// Resumes a paused campaign: its queued sends become due again, paced at the Page's send rate
/// so the resumed campaign does not crowd out other Pages. Nobody is messaged twice: each
/// delivery row is claimed once.
pub async fn resume(pool: &PgPool, id: i64) -> Result<(), CampaignError> {
    let mut tx = pool.begin().await?;
    transition(&mut tx, id, &["paused"], "running").await?;
    sends::repace(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// Cancels a campaign: its queued sends, and everyone not fanned out yet, are recorded as
/// skipped (`cancelled`), so the campaign completes with counters that add up. Sends already
/// under way finish and are recorded as they end.
pub async fn cancel(pool: &PgPool, id: i64) -> Result<(), CampaignError> {
    let mut tx = pool.begin().await?;
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    match state.as_deref() {
        None => return Err(CampaignError::NotFound("campaign")),
        Some("completed" | "cancelled") => {
            return Err(CampaignError::WrongState(state.unwrap_or_default()));
        }
        Some(_) => {}
    }
    sends::cancel(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves a campaign from one of `from` to `to`, or says why it cannot.
async fn transition(
    conn: &mut PgConnection,
    id: i64,
    from: &[&str],
    to: &str,
) -> Result<(), CampaignError> {
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    let moved = sqlx::query("UPDATE campaigns SET state = $3 WHERE id = $1 AND state = ANY($2)")
        .bind(id)
        .bind(&from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Err(match state {
        None => CampaignError::NotFound("campaign"),
        Some(state) => CampaignError::WrongState(state),
    })
}
