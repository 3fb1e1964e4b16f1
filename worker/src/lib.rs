//! The worker: a stateless, horizontally scaled process that executes queued jobs. Each process
//! registers under a name unique among live processes (host and pid), as apalis requires.

mod dsr;
mod email;
mod notify;
mod policy;
mod rotate;
mod send;
mod service;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use moonengage_core::crypto::Keyring;
use moonengage_core::email::Mailer;
use moonengage_core::messenger;
use moonengage_core::notify::AdminEvent;
use moonengage_core::policy::PolicyNoticeJob;
use moonengage_core::queue::{
    self, DSR_QUEUE, DsrJob, EMAIL_QUEUE, NOTIFY_QUEUE, NotifyJob, POLICY_QUEUE, ROTATE_QUEUE,
    RotateJob, SEND_QUEUE, SendJob, WEBHOOK_QUEUE, WebhookJob,
};
use moonengage_core::rate_limit::RateLimiter;
use moonengage_core::settings::{QueueSettings, Settings};
use moonengage_core::unsubscribe::UnsubscribeSigner;
use moonengage_core::{db, metrics, shutdown};
use sqlx::PgPool;

pub use send::SendContext;
pub use service::ServiceContext;

/// Admin e-mails are rare; a few at once is plenty and spares the SMTP server a burst.
const EMAIL_CONCURRENCY: usize = 4;

/// What every queue's apalis worker of this process shares.
struct Queues<'a> {
    name: &'a str,
    pool: &'a PgPool,
    settings: &'a QueueSettings,
}

/// Registers one queue's apalis worker: named after this process and the queue, on the
/// queue's storage (see `queue::storage`), with job metrics, the job's shared context and a
/// concurrency limit. A macro because each queue's worker is a different type.
macro_rules! register_queue {
    ($monitor:expr, $queues:expr, $queue:expr, $job:ty, $data:expr, $concurrency:expr, $handler:path) => {{
        let name = format!("{}-{}", $queues.name, $queue);
        let pool = $queues.pool.clone();
        let settings = $queues.settings.clone();
        let data = $data;
        let concurrency = $concurrency;
        $monitor.register(move |_restarts| {
            WorkerBuilder::new(name.as_str())
                .backend(queue::storage::<$job>(&pool, &settings, $queue))
                .layer(metrics::JobMetricsLayer::new($queue))
                .data(data.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .build($handler)
        })
    }};
}

/// A built worker, ready to run.
pub struct Worker {
    settings: Settings,
    pool: PgPool,
    context: Arc<SendContext>,
    service: Arc<ServiceContext>,
    limiter: Arc<RateLimiter>,
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
        let limiter = Arc::new(RateLimiter::new(&settings.redis, &settings.rate_limit)?);
        let service = Arc::new(ServiceContext {
            pool: pool.clone(),
            keyring: keyring.clone(),
            client: client.clone(),
            queue: settings.queue.clone(),
        });
        let context = Arc::new(SendContext::new(
            pool.clone(),
            keyring,
            client,
            signer,
            limiter.clone(),
            &settings,
        ));
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let name = format!("{host}-{}", std::process::id());
        Ok(Worker {
            settings,
            pool,
            context,
            service,
            limiter,
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
            service,
            limiter,
            name,
        } = self;
        let counting = tokio::spawn(count_live_workers(
            pool.clone(),
            limiter.clone(),
            Duration::from_secs(settings.queue.heartbeat_secs),
        ));
        let concurrency = settings.worker.concurrency;
        let queues = Queues {
            name: &name,
            pool: &pool,
            settings: &settings.queue,
        };
        let dsr = Arc::new(dsr::DsrContext::new(
            service.pool.clone(),
            service.keyring.clone(),
            service.client.clone(),
            &settings,
        ));
        let email = Arc::new(email::EmailContext {
            pool: pool.clone(),
            mailer: Mailer::new(&settings.email).context("preparing admin e-mail")?,
            queue: settings.queue.clone(),
            base_url: settings.web.public_base_url.clone(),
        });
        let policy = Arc::new(policy::PolicyContext {
            service: service.clone(),
            limiter,
            keywords: settings.keywords.clone(),
        });
        let rotate = Arc::new(rotate::RotateContext::new(
            service.pool.clone(),
            service.keyring.clone(),
            &settings,
        ));
        let monitor = Monitor::new();
        let monitor = register_queue!(
            monitor,
            queues,
            SEND_QUEUE,
            SendJob,
            context,
            concurrency,
            send::handle
        );
        let monitor = register_queue!(
            monitor,
            queues,
            WEBHOOK_QUEUE,
            WebhookJob,
            service.clone(),
            concurrency,
            webhook::handle
        );
        let monitor = register_queue!(
            monitor,
            queues,
            NOTIFY_QUEUE,
            NotifyJob,
            service,
            concurrency,
            notify::handle
        );
        let monitor = register_queue!(
            monitor,
            queues,
            EMAIL_QUEUE,
            AdminEvent,
            email,
            EMAIL_CONCURRENCY,
            email::handle
        );
        let monitor = register_queue!(
            monitor,
            queues,
            POLICY_QUEUE,
            PolicyNoticeJob,
            policy,
            concurrency,
            policy::handle
        );
        let monitor = register_queue!(monitor, queues, DSR_QUEUE, DsrJob, dsr, 1, dsr::handle);
        let monitor = register_queue!(
            monitor,
            queues,
            ROTATE_QUEUE,
            RotateJob,
            rotate,
            1,
            rotate::handle
        );
        let monitor = monitor
            .should_restart(|ctx, error| {
                tracing::warn!(worker = ctx.name(), %error, "worker stopped; restarting");
                !ctx.is_shutting_down()
            })
            .shutdown_timeout(Duration::from_secs(settings.worker.shutdown_timeout_secs));
        metrics::init("worker");
        metrics::start(&settings.metrics).await;
        tracing::info!(worker = %name, concurrency, "worker started");
        monitor
            .run_with_signal(async move {
                stop.await;
                tracing::info!("stopping: draining in-flight jobs");
                Ok(())
            })
            .await
            .context("worker monitor")?;
        counting.abort();
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Keeps the rate limiter's fallback share right: with Redis down, each worker sends at the
/// Page's rate divided by the send workers that heartbeated recently.
async fn count_live_workers(pool: PgPool, limiter: Arc<RateLimiter>, heartbeat: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let live: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM apalis.workers
             WHERE worker_type = $1 AND last_seen > now() - make_interval(secs => $2)",
        )
        .bind(SEND_QUEUE)
        .bind(heartbeat.as_secs_f64() * 3.0)
        .fetch_one(&pool)
        .await;
        if let Ok(live) = live {
            limiter.set_live_workers(usize::try_from(live).unwrap_or(1));
        }
    }
}
