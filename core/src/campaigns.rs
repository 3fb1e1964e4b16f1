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

/// Run time given to a paused campaign's queued jobs: far enough that no worker fetches them,
/// so a paused campaign costs nothing until it is resumed (no polling churn).
const PAUSED_RUN_AT: &str = "now() + interval '100 years'";

/// Pauses a running (or scheduled) campaign: its queued jobs are parked, and a job already
/// fetched sees the state and parks itself without sending.
pub async fn pause(pool: &PgPool, id: i64) -> Result<(), CampaignError> {
    transition(pool, id, &["running", "scheduled"], "paused").await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE apalis.jobs SET run_at = {PAUSED_RUN_AT}
         WHERE job_type = 'send' AND split_part(idempotency_key, ':', 1)::bigint = $1
           AND status IN ('Pending', 'Failed')"
    )))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Resumes a paused campaign: its parked jobs become due again, paced at the Page's send rate
/// so the resumed campaign does not crowd out other Pages. Nobody is messaged twice: each
/// delivery's claim still holds.
pub async fn resume(pool: &PgPool, id: i64) -> Result<(), CampaignError> {
    transition(pool, id, &["paused"], "running").await?;
    sqlx::query(
        "WITH parked AS (
             SELECT j.id, row_number() OVER (ORDER BY j.id) AS n, p.send_rate
             FROM apalis.jobs j
             JOIN campaigns c ON c.id = $1
             JOIN pages p ON p.id = c.page_id
             WHERE j.job_type = 'send' AND split_part(j.idempotency_key, ':', 1)::bigint = $1
               AND j.status IN ('Pending', 'Failed')
         )
         UPDATE apalis.jobs j
         SET run_at = now() + make_interval(secs => (parked.n - 1)::float8 / parked.send_rate)
         FROM parked WHERE j.id = parked.id",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Cancels a campaign: its queued jobs are removed and each of their recipients is recorded as
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
    sqlx::query(
        "WITH removed AS (
             DELETE FROM apalis.jobs
             WHERE job_type = 'send' AND split_part(idempotency_key, ':', 1)::bigint = $1
               AND status IN ('Pending', 'Failed')
             RETURNING split_part(idempotency_key, ':', 2)::bigint AS subscriber_id
         )
         INSERT INTO deliveries (campaign_id, subscriber_id, status, reason)
         SELECT $1, subscriber_id, 'skipped', 'cancelled' FROM removed
         ON CONFLICT (campaign_id, subscriber_id) DO UPDATE
           SET status = 'skipped', reason = 'cancelled', updated_at = now()
           WHERE deliveries.status = 'retrying'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    // People not fanned out yet are counted as skipped too, so totals cover the whole audience.
    sqlx::query(
        "WITH rest AS (
             INSERT INTO deliveries (campaign_id, subscriber_id, status, reason)
             SELECT c.id, s.id, 'skipped', 'cancelled'
             FROM campaigns c JOIN subscribers s ON s.page_id = c.page_id AND s.id > c.fanout_cursor
             WHERE c.id = $1 AND NOT c.fanout_done
             ON CONFLICT DO NOTHING
             RETURNING 1
         )
         UPDATE campaigns SET state = 'cancelled', fanout_done = true,
             recipients = recipients + (SELECT count(*) FROM rest)
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves a campaign from one of `from` to `to`, or says why it cannot.
async fn transition(pool: &PgPool, id: i64, from: &[&str], to: &str) -> Result<(), CampaignError> {
    let from: Vec<String> = from.iter().map(|s| (*s).to_owned()).collect();
    let moved = sqlx::query("UPDATE campaigns SET state = $3 WHERE id = $1 AND state = ANY($2)")
        .bind(id)
        .bind(&from)
        .bind(to)
        .execute(pool)
        .await?;
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Err(match state {
        None => CampaignError::NotFound("campaign"),
        Some(state) => CampaignError::WrongState(state),
    })
}
