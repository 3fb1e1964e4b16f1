//! The scheduler: exactly one leader (a Postgres advisory lock) runs the leader services —
//! fan-out, completion, retention, due-soon alerts and the database gauges, each on its own
//! interval (see [`services`]). Other schedulers stand by and take over within
//! `scheduler.tick_ms` when the leader dies.

mod leader;
pub mod services;

use std::future::Future;
use std::time::Duration;

use moonengage_core::settings::Settings;
use moonengage_core::{db, jobs};
use moonengage_ops::{metrics, shutdown};
use moonengage_queue::reconnect::{self, Backoff};
use sqlx::PgPool;

use crate::leader::Leader;
use crate::services::Services;

/// A built scheduler, ready to run.
pub struct Scheduler {
    settings: Settings,
    pool: PgPool,
}

impl Scheduler {
    /// Connects to Postgres; fails with the setting named when it is invalid.
    pub async fn build(settings: Settings) -> anyhow::Result<Scheduler> {
        let pool = db::connect(&settings.database)?;
        Ok(Scheduler { settings, pool })
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            let _ = shutdown::signal().await;
        })
        .await
    }

    /// Runs until `stop` resolves, checking leadership every `scheduler.tick_ms`: the services
    /// start when this scheduler takes the lock and stop (cancelled and awaited) when it loses
    /// it or stops. A scheduler never exits because the database blinked: it retries with backoff
    /// (see `moonengage_queue::reconnect`) and says so once.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut leader = Leader::new(&self.settings.database);
        let tick = Duration::from_millis(self.settings.scheduler.tick_ms);
        tokio::pin!(stop);
        metrics::init("scheduler", jobs::QUEUES);
        metrics::start(&self.settings.metrics).await;
        services::stand_by();
        let mut running: Option<Services> = None;
        tracing::info!("scheduler started");
        let mut backoff = Backoff::default();
        let mut wait = tick;
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
            let leads = match leader.ensure().await {
                Ok(leads) => {
                    backoff.reset();
                    reconnect::reached();
                    wait = tick;
                    leads
                }
                Err(error) => {
                    if reconnect::is_unreachable(&error) {
                        reconnect::lost(&error);
                    } else {
                        tracing::warn!(error = %format!("{error:#}"), "cannot take the leader lock");
                    }
                    wait = backoff.next_wait().max(tick);
                    false
                }
            };
            if leads && running.is_none() {
                running = Some(Services::start(&self.settings, &self.pool));
            } else if !leads && let Some(services) = running.take() {
                services.stop().await;
            }
        }
        if let Some(services) = running {
            services.stop().await;
        }
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
