//! Campaigns: creation (with the template validated up front), scheduling and live progress.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

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

/// Creates a draft campaign for a Page after checking its template renders.
pub async fn create(
    pool: &PgPool,
    page_id: i64,
    name: &str,
    template: &str,
) -> Result<i64, CampaignError> {
    Template::validate(template)?;
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

/// A campaign's state and counters: live from `deliveries` while it runs, frozen in the
/// campaign row once it ends.
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

/// Reads a campaign's progress.
pub async fn progress(pool: &PgPool, id: i64) -> anyhow::Result<Option<Progress>> {
    sqlx::query_as(
        "SELECT c.id, c.state, c.fanout_done, c.recipients::bigint AS recipients,
                CASE WHEN c.completed_at IS NULL THEN coalesce(d.sent, 0) ELSE c.sent END AS sent,
                CASE WHEN c.completed_at IS NULL THEN coalesce(d.skipped, 0) ELSE c.skipped END AS skipped,
                CASE WHEN c.completed_at IS NULL THEN coalesce(d.failed, 0) ELSE c.failed END AS failed,
                CASE WHEN c.completed_at IS NULL THEN coalesce(d.unknown, 0) ELSE c.unknown END AS unknown
         FROM campaigns c
         LEFT JOIN LATERAL (
             SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
                    count(*) FILTER (WHERE status = 'skipped') AS skipped,
                    count(*) FILTER (WHERE status = 'failed') AS failed,
                    count(*) FILTER (WHERE status = 'unknown') AS unknown
             FROM deliveries WHERE campaign_id = c.id
         ) d ON c.completed_at IS NULL
         WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading campaign progress")
}
