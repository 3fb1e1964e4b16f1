//! The leader's services, shaped as River's maintenance services: each does one kind of upkeep
//! (fan-out, completion, retention, due-soon alerts, the database gauges) on its own interval, in
//! its own task. They start together when this scheduler becomes the leader and stop together —
//! cancelled and awaited — when it loses the lock or shuts down, so a scheduler that stopped
//! leading stops working within one leadership check. A run that fails is logged and retried at
//! the service's next interval; it never stops the other services.

mod completion;
mod due_soon;
pub mod fanout;
mod gauges;
mod maintenance;
mod retention;

use std::future::Future;
use std::time::Duration;

use moonengage_core::settings::Settings;
use moonengage_queue::reconnect;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// One kind of upkeep the leader does periodically. Every run is idempotent (a run cut short by
/// a lost lock, or repeated by the next leader, does no harm), so the runner may cancel it at any
/// await point.
pub trait Service: Send + 'static {
    /// Names the service in logs.
    const NAME: &'static str;

    /// Time between the starts of two runs; the first run starts as soon as the service does.
    fn interval(&self) -> Duration;

    /// Does one round of the upkeep.
    fn run_once(&mut self, pool: &PgPool) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called once the service has stopped (also after a cancelled run), to withdraw what only
    /// a leader may show.
    fn stopped(&mut self) {}
}

/// The leader's services while this scheduler leads.
pub struct Services {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Services {
    /// Starts every service, each in its own task, with the intervals of `settings`.
    pub fn start(settings: &Settings, pool: &PgPool) -> Services {
        let mut services = Services {
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
        };
        services.spawn(fanout::FanOut::new(&settings.scheduler), pool);
        services.spawn(completion::Completion::new(&settings.scheduler), pool);
        services.spawn(retention::Retention::new(&settings.retention), pool);
        services.spawn(due_soon::DueSoon::new(&settings.email), pool);
        services.spawn(gauges::Gauges::new(settings), pool);
        services.spawn(
            maintenance::MaintenanceExpiry::new(&settings.accounts),
            pool,
        );
        tracing::info!("leader services started");
        services
    }

    /// Runs `service` in a task of its own until these services stop.
    fn spawn<S: Service>(&mut self, service: S, pool: &PgPool) {
        self.tasks
            .spawn(run(service, pool.clone(), self.stop.clone()));
    }

    /// Cancels every service and waits until all have stopped.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a leader service panicked");
            }
        }
        tracing::info!("leader services stopped");
    }
}

/// What a scheduler that does not lead shows: the database gauges are the leader's alone.
pub fn stand_by() {
    gauges::withdraw();
}

/// Runs `service` every interval until `stop` is cancelled, cancelling a run under way.
async fn run<S: Service>(mut service: S, pool: PgPool, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(service.interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            ran = service.run_once(&pool) => {
                match ran {
                    Ok(()) => reconnect::reached(),
                    Err(error) if reconnect::is_unreachable(&error) => reconnect::lost(&error),
                    Err(error) => tracing::warn!(
                        service = S::NAME,
                        error = %format!("{error:#}"),
                        "leader service run failed; retried at its next interval"
                    ),
                }
            }
        }
    }
    service.stopped();
}
