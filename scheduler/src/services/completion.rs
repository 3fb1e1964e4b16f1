//! The completion service: outcome counts the workers appended are folded into their campaigns,
//! finished campaigns complete (admins e-mailed), and cancelled ones whose last sends ended get
//! their totals frozen. Runs every `scheduler.completion_ms`.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::campaigns::CampaignState;
use moonengage_core::settings::SchedulerSettings;
use moonengage_ops::alerts::{self, AdminEvent};
use moonengage_queue::sends;
use sqlx::PgPool;

use super::Service;

/// Completes finished campaigns and settles cancelled ones.
pub struct Completion {
    every: Duration,
}

impl Completion {
    /// Completion as configured in `[scheduler]`.
    pub fn new(settings: &SchedulerSettings) -> Completion {
        Completion {
            every: Duration::from_millis(settings.completion_ms),
        }
    }
}

impl Service for Completion {
    const NAME: &'static str = "completion";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn run_once(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        for campaign_id in complete_finished(pool).await? {
            tracing::info!(campaign_id, "campaign completed");
        }
        for campaign_id in freeze_cancelled(pool).await? {
            tracing::info!(campaign_id, "cancelled campaign settled; totals frozen");
        }
        Ok(())
    }
}

/// Completes every fanned-out running campaign whose recipients all have a final outcome, and
/// stamps its end (its counters outlive the delivery rows). Admins are
/// e-mailed in the same transaction: "failed" when nothing was sent and sends failed, else
/// "completed".
async fn complete_finished(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool
        .begin()
        .await
        .context("starting to complete campaigns")?;
    sends::fold_tallies(&mut tx)
        .await
        .context("folding outcome counts into campaigns")?;
    let completed = freeze(&mut tx, CampaignState::Running, CampaignState::Completed)
        .await
        .context("completing finished campaigns")?;
    for &(campaign_id, sent, failed) in &completed {
        let event = if sent == 0 && failed > 0 {
            AdminEvent::CampaignFailed { campaign_id }
        } else {
            AdminEvent::CampaignCompleted { campaign_id }
        };
        alerts::admin(&mut *tx, event).await?;
    }
    tx.commit()
        .await
        .context("committing completed campaigns")?;
    Ok(completed.into_iter().map(|(id, ..)| id).collect())
}

/// Freezes the counters of every cancelled campaign once its recipients all have a final outcome
/// (sends under way when it was cancelled have ended), and stamps `completed_at`: from then on
/// its totals live in the campaign row, like a completed campaign's, so retention may delete its
/// delivery rows. The state stays `cancelled`.
async fn freeze_cancelled(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    sends::fold_tallies(&mut tx)
        .await
        .context("folding outcome counts into campaigns")?;
    let frozen = freeze(&mut tx, CampaignState::Cancelled, CampaignState::Cancelled)
        .await
        .context("freezing cancelled campaigns")?;
    tx.commit().await.context("committing settled campaigns")?;
    Ok(frozen.into_iter().map(|(id, ..)| id).collect())
}

/// Moves every fanned-out campaign in state `from` whose recipients all have a final outcome
/// (its live counters add up) to state `to`, stamping `completed_at`. Returns each campaign's
/// id, sent and failed counts.
async fn freeze(
    conn: &mut sqlx::PgConnection,
    from: CampaignState,
    to: CampaignState,
) -> sqlx::Result<Vec<(i64, i32, i32)>> {
    sqlx::query_as(
        "UPDATE campaigns SET state = $2, completed_at = now()
         WHERE state = $1 AND fanout_done AND completed_at IS NULL
           AND sent + skipped + failed + unknown >= recipients
         RETURNING id, sent, failed",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}
