//! The worker: a stateless, horizontally scaled process that executes queued jobs. Each process
//! registers under a name unique among live processes (host and pid), heartbeats to keep the
//! leases of what it holds, and runs one apalis worker per kind of job on the queue's backend.

mod account_alert;
mod dsr;
mod email;
mod env;
mod export_link;
mod handle;
mod incident;
mod invitation;
mod mailer;
mod notice;
mod notify;
mod pacer;
mod policy;
mod profile;
mod rotate;
mod send;
mod service;
mod webhook;
mod workspace_cancel;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::mailer::Mailer;
use anyhow::Context as _;
use apalis::prelude::*;
use moonengage_accounts::alerts::AccountAlert;
use moonengage_accounts::cancellation::CancelJob;
use moonengage_accounts::invitations::InvitationJob;
use moonengage_core::db;
use moonengage_core::jobs::{self, NotifyJob};
use moonengage_core::profile::ProfileJob;
use moonengage_core::settings::Settings;
use moonengage_messenger as messenger;
use moonengage_messenger::limiter::RateLimiter;
use moonengage_ops::alerts::AdminEvent;
use moonengage_ops::metrics;
use moonengage_ops::shutdown;
use moonengage_privacy::crypto::Keyring;
use moonengage_privacy::dsr::DsrJob;
use moonengage_privacy::export_link::ExportLinkJob;
use moonengage_privacy::incidents::IncidentNoticeJob;
use moonengage_privacy::policy::PolicyNoticeJob;
use moonengage_privacy::rotation::RotateJob;
use moonengage_privacy::unsubscribe::UnsubscribeSigner;
use moonengage_queue::wake::Wakers;
use moonengage_queue::{Job, events, reconnect, sends, workers};

use crate::env::Env;
use crate::handle::register;

/// What registering each kind needs: this process's name, the shared environment and the
/// wake-ups of its LISTEN connection.
#[derive(Clone)]
pub(crate) struct Registration {
    name: String,
    env: Arc<Env>,
    wakers: Wakers,
}

/// A built worker, ready to run.
pub struct Worker {
    env: Arc<Env>,
    name: String,
}

impl Worker {
    /// Connects, loads the keyring and prepares the Graph API client; fails with the setting
    /// or resource named when something is missing.
    pub async fn build(settings: Settings) -> anyhow::Result<Worker> {
        let pool = db::connect(&settings.database)?;
        let keyring = reconnect::retry(|| async {
            Keyring::load_or_create(&pool, &settings.crypto)
                .await
                .context("loading the data keys")
        })
        .await?;
        let client = messenger::Client::new(&settings.messenger, settings.app.is_production())?;
        let signer = UnsubscribeSigner::new(&settings.unsubscribe)?;
        let limiter = Arc::new(RateLimiter::new(&settings.redis, &settings.rate_limit)?);
        let mailer = Mailer::new(&settings.email).context("preparing admin e-mail")?;
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let name = format!("{host}-{}", std::process::id());
        let env = Env::new(pool, keyring, client, signer, limiter, mailer, settings);
        Ok(Worker {
            env: Arc::new(env),
            name,
        })
    }

    /// This process's name in `queue_workers` and in `locked_by` of the rows it holds.
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

    /// Runs until `stop` resolves, then stops claiming, gives back what it claimed but did not
    /// start, and lets in-flight jobs finish within `worker.shutdown_timeout_secs`.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Worker { env, name } = self;
        let settings = &env.settings;
        let queue = &settings.queue;
        let kinds: Vec<String> = [
            sends::KIND,
            events::KIND,
            NotifyJob::KIND,
            AdminEvent::KIND,
            PolicyNoticeJob::KIND,
            ProfileJob::KIND,
            IncidentNoticeJob::KIND,
            DsrJob::KIND,
            ExportLinkJob::KIND,
            RotateJob::KIND,
            AccountAlert::KIND,
            InvitationJob::KIND,
            CancelJob::KIND,
        ]
        .map(str::to_owned)
        .to_vec();
        let wakers = Wakers::default();
        let background = [
            tokio::spawn(workers::heartbeat(
                env.pool.clone(),
                name.clone(),
                kinds,
                Duration::from_secs(queue.heartbeat_secs.max(1)),
                queue.lease(),
            )),
            tokio::spawn(settle_expired(env.clone())),
            tokio::spawn(count_live_workers(env.clone())),
            tokio::spawn(
                wakers
                    .clone()
                    .listen(db::connect_session(&env.settings.database)?),
            ),
        ];
        let registration = Registration {
            name: name.clone(),
            env: env.clone(),
            wakers,
        };
        let monitor = send::register(Monitor::new(), &registration);
        let monitor = webhook::register(monitor, &registration);
        let monitor = register::<NotifyJob>(monitor, &registration);
        let monitor = register::<AdminEvent>(monitor, &registration);
        let monitor = register::<PolicyNoticeJob>(monitor, &registration);
        let monitor = register::<ProfileJob>(monitor, &registration);
        let monitor = register::<IncidentNoticeJob>(monitor, &registration);
        let monitor = register::<DsrJob>(monitor, &registration);
        let monitor = register::<ExportLinkJob>(monitor, &registration);
        let monitor = register::<RotateJob>(monitor, &registration);
        let monitor = register::<AccountAlert>(monitor, &registration);
        let monitor = register::<InvitationJob>(monitor, &registration);
        let monitor = register::<CancelJob>(monitor, &registration);
        let monitor = monitor
            .should_restart(|ctx, error| {
                tracing::warn!(worker = ctx.name(), %error, "worker stopped; restarting");
                !ctx.is_shutting_down()
            })
            .shutdown_timeout(Duration::from_secs(settings.worker.shutdown_timeout_secs));
        metrics::init("worker", jobs::QUEUES);
        metrics::start(&settings.metrics).await;
        tracing::info!(worker = %name, concurrency = settings.worker.concurrency, "worker started");
        monitor
            .run_with_signal(async move {
                stop.await;
                tracing::info!("stopping: draining in-flight jobs");
                Ok(())
            })
            .await
            .context("worker monitor")?;
        for task in background {
            task.abort();
        }
        if let Err(error) = workers::deregister(&env.pool, &name).await {
            tracing::warn!(%error, "leaving the worker registry failed; it expires by itself");
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Every heartbeat: settles the sends whose worker died (their leases expired). Other jobs
/// need no sweep: a claim takes back a job whose lease expired.
async fn settle_expired(env: Arc<Env>) {
    let queue = &env.settings.queue;
    let mut every = tokio::time::interval(Duration::from_secs(queue.heartbeat_secs.max(1)));
    loop {
        every.tick().await;
        match reconnect::report(
            sends::settle_expired(&env.pool).await,
            "settling expired sends",
        ) {
            Some(0) | None => {}
            Some(n) => tracing::warn!(sends = n, "sends of a dead worker settled as unknown"),
        }
    }
}

/// Keeps the rate limiter's fallback share right, every second: with Redis down, each worker
/// sends at a Page's rate divided by the send workers alive, so a worker that just started
/// must be counted at once.
async fn count_live_workers(env: Arc<Env>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let live = workers::live(&env.pool, sends::KIND, env.settings.queue.lease()).await;
        if let Some(live) = reconnect::report(live, "counting live workers") {
            env.limiter
                .set_live_workers(usize::try_from(live).unwrap_or(1));
        }
    }
}
