//! The scheduler: exactly one leader (a Postgres advisory lock) starts due campaigns, fans them
//! out into send jobs, completes them, and enforces retention. Other schedulers stand by and take
//! over within a tick when the leader dies.

mod alerts;
pub mod fanout;
mod gauges;
mod leader;
mod retention;

use std::future::Future;
use std::time::Duration;

use moonengage_core::settings::Settings;
use moonengage_core::{db, jobs};
use moonengage_ops::metrics;
use moonengage_ops::shutdown;
use moonengage_queue::sends;
use sqlx::PgPool;

use crate::gauges::DbCollector;
use crate::leader::Leader;

/// Fan-out batches per campaign per tick, so one huge campaign cannot keep the leader from
/// starting, completing or fanning out others.
const BATCHES_PER_TICK: usize = 20;

/// A built scheduler, ready to run.
pub struct Scheduler {
    settings: Settings,
    pool: PgPool,
    due_soon: alerts::DueSoon,
    retention: retention::Retention,
}

impl Scheduler {
    /// Connects to Postgres; fails with the setting named when it is invalid.
    pub async fn build(settings: Settings) -> anyhow::Result<Scheduler> {
        let pool = db::connect(&settings.database)?;
        let due_soon = alerts::DueSoon::new(&settings.email);
        let retention = retention::Retention::new(&settings.retention);
        Ok(Scheduler {
            settings,
            pool,
            due_soon,
            retention,
        })
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            let _ = shutdown::signal().await;
        })
        .await
    }

    /// Runs until `stop` resolves. A failing tick is logged and retried on the next one; a
    /// scheduler never exits because the database blinked.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut leader = Leader::new(&self.settings.database);
        let tick = Duration::from_millis(self.settings.scheduler.tick_ms);
        tokio::pin!(stop);
        metrics::init("scheduler", jobs::QUEUES);
        metrics::start(&self.settings.metrics).await;
        let queue = &self.settings.queue;
        let mut gauges = DbCollector::new(
            Duration::from_millis(self.settings.metrics.refresh_ms),
            Duration::from_secs(queue.heartbeat_secs * queue.missed_heartbeats as u64),
        );
        tracing::info!("scheduler started");
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(tick) => {}
            }
            match leader.ensure().await {
                Ok(true) => {
                    if let Err(error) = self.tick().await {
                        tracing::warn!(error = %format!("{error:#}"), "scheduler tick failed");
                    }
                    if let Err(error) = gauges.lead(&self.pool).await {
                        tracing::warn!(error = %format!("{error:#}"), "metrics refresh failed");
                    }
                }
                Ok(false) => gauges.stand_by(),
                Err(error) => {
                    gauges.stand_by();
                    tracing::warn!(error = %format!("{error:#}"), "cannot reach the leader lock");
                }
            }
        }
        tracing::info!("scheduler stopped");
        Ok(())
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let settings = &self.settings;
        let started = fanout::start_due(&self.pool).await?;
        if started > 0 {
            tracing::info!(started, "campaigns started");
        }
        for (campaign_id, mut cursor) in fanout::pending(&self.pool).await? {
            for _ in 0..BATCHES_PER_TICK {
                let done = sends::fan_out(
                    &self.pool,
                    campaign_id,
                    cursor,
                    settings.scheduler.fanout_batch,
                    settings.scheduler.pace_fanout,
                )
                .await?;
                if done {
                    tracing::info!(campaign_id, "campaign fanned out");
                    break;
                }
                cursor = sqlx::query_scalar("SELECT fanout_cursor FROM campaigns WHERE id = $1")
                    .bind(campaign_id)
                    .fetch_one(&self.pool)
                    .await?;
            }
        }
        for campaign_id in fanout::complete_finished(&self.pool).await? {
            tracing::info!(campaign_id, "campaign completed");
        }
        for campaign_id in fanout::freeze_cancelled(&self.pool).await? {
            tracing::info!(campaign_id, "cancelled campaign settled; totals frozen");
        }
        let (requests, incidents) = self.due_soon.check(&self.pool).await?;
        for request_id in requests {
            tracing::info!(request_id, "admins told that a request is due soon");
        }
        for incident_id in incidents {
            tracing::warn!(
                incident_id,
                "admins told that an incident's report deadline nears"
            );
        }
        self.retention.run_if_due(&self.pool).await?;
        Ok(())
    }
}
