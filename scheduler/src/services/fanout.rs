//! The fan-out service: due campaigns start, running ones are fanned out (one set-based statement
//! per batch, `moonengage_queue::sends::fan_out`: a crash between batches resumes with no
//! duplicate and no gap). Runs every `scheduler.fanout_ms`.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::settings::SchedulerSettings;
use moonengage_queue::sends;
use sqlx::PgPool;

use super::Service;

/// Fan-out batches per campaign per run, so one huge campaign cannot keep the others waiting.
const BATCHES_PER_RUN: usize = 20;

/// Starts due campaigns and fans running ones out into send jobs.
pub struct FanOut {
    every: Duration,
    batch: i64,
    pace: bool,
}

impl FanOut {
    /// Fan-out as configured in `[scheduler]`.
    pub fn new(settings: &SchedulerSettings) -> FanOut {
        FanOut {
            every: Duration::from_millis(settings.fanout_ms),
            batch: settings.fanout_batch,
            pace: settings.pace_fanout,
        }
    }
}

impl Service for FanOut {
    const NAME: &'static str = "fanout";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn run_once(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let started = start_due(pool).await?;
        if started > 0 {
            tracing::info!(started, "campaigns started");
        }
        for (campaign_id, mut cursor) in pending(pool).await? {
            for _ in 0..BATCHES_PER_RUN {
                if sends::fan_out(pool, campaign_id, cursor, self.batch, self.pace).await? {
                    tracing::info!(campaign_id, "campaign fanned out");
                    break;
                }
                cursor = cursor_of(pool, campaign_id).await?;
            }
        }
        Ok(())
    }
}

/// Starts every scheduled campaign whose time has come.
pub async fn start_due(pool: &PgPool) -> anyhow::Result<u64> {
    let started = sqlx::query(
        "UPDATE campaigns SET state = 'running', started_at = now()
         WHERE state = 'scheduled' AND scheduled_at <= now()",
    )
    .execute(pool)
    .await
    .context("starting due campaigns")?;
    Ok(started.rows_affected())
}

/// Campaigns still being fanned out, oldest first, with their cursors.
async fn pending(pool: &PgPool) -> anyhow::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT id, fanout_cursor FROM campaigns
         WHERE state = 'running' AND NOT fanout_done ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("listing campaigns to fan out")
}

/// Where a campaign's fan-out stands after its last batch.
async fn cursor_of(pool: &PgPool, campaign_id: i64) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT fanout_cursor FROM campaigns WHERE id = $1")
        .bind(campaign_id)
        .fetch_one(pool)
        .await
        .context("reading a campaign's fan-out cursor")
}
