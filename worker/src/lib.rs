//! The worker: a stateless, horizontally scaled process that executes queued jobs. Each process
//! registers under a name unique among live processes (host and pid), as apalis requires.

mod send;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use moonengage_core::crypto::Keyring;
use moonengage_core::messenger;
use moonengage_core::queue::{self, SEND_QUEUE, SendJob};
use moonengage_core::settings::Settings;
use moonengage_core::unsubscribe::UnsubscribeSigner;
use moonengage_core::{db, shutdown};
use sqlx::PgPool;

pub use send::SendContext;

/// A built worker, ready to run.
pub struct Worker {
    settings: Settings,
    pool: PgPool,
    context: Arc<SendContext>,
    name: String,
}

impl Worker {
    /// Connects, loads the keyring and prepares the Graph API client; fails with the setting
    /// or resource named when something is missing.
    pub async fn build(settings: Settings) -> anyhow::Result<Worker> {
        let pool = db::connect(&settings.database)?;
        let keyring = Keyring::load_or_create(&pool, &settings.crypto)
            .await
            .context("loading the data keys")?;
        let client = messenger::Client::new(&settings.messenger, settings.app.is_production())?;
        let signer = UnsubscribeSigner::new(&settings.unsubscribe)?;
        let context = Arc::new(SendContext::new(
            pool.clone(),
            keyring,
            client,
            signer,
            settings.queue.clone(),
        ));
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let name = format!("{host}-{}", std::process::id());
        Ok(Worker {
            settings,
            pool,
            context,
            name,
        })
    }

    /// This process's name in `apalis.workers` and in `lock_by` of the jobs it runs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the worker; needed only when several run in one process (tests), since the
    /// default name (host and pid) must be unique among live workers.
    pub fn named(mut self, name: impl Into<String>) -> Worker {
        self.name = name.into();
        self
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            let _ = shutdown::signal().await;
        })
        .await
    }

    /// Runs until `stop` resolves, then stops fetching and lets in-flight jobs finish within
    /// `worker.shutdown_timeout_secs`. A worker whose database connection fails is restarted
    /// by the monitor rather than left dead.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Worker {
            settings,
            pool,
            context,
            name,
        } = self;
        let concurrency = settings.worker.concurrency;
        let queue_settings = settings.queue.clone();
        let send_name = format!("{name}-{SEND_QUEUE}");
        let monitor = Monitor::new()
            .register(move |_restarts| {
                WorkerBuilder::new(send_name.as_str())
                    .backend(queue::storage::<SendJob>(
                        &pool,
                        &queue_settings,
                        SEND_QUEUE,
                    ))
                    .data(context.clone())
                    .concurrency(concurrency)
                    .parallelize(tokio::spawn)
                    .build(send::handle)
            })
            .should_restart(|ctx, error| {
                tracing::warn!(worker = ctx.name(), %error, "worker stopped; restarting");
                !ctx.is_shutting_down()
            })
            .shutdown_timeout(Duration::from_secs(settings.worker.shutdown_timeout_secs));
        tracing::info!(worker = %name, concurrency, "worker started");
        monitor
            .run_with_signal(async move {
                stop.await;
                tracing::info!("stopping: draining in-flight jobs");
                Ok(())
            })
            .await
            .context("worker monitor")?;
        tracing::info!("worker stopped");
        Ok(())
    }
}
