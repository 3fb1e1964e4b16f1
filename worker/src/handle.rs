//! How each kind of job runs, and the one generic registration of a kind with apalis: a
//! [`QueueBackend`] over the kind's rows, job metrics, the shared [`Env`], a concurrency limit,
//! and a handler that runs the job and settles its row through the batched outcome writer.
//! Retries, deferrals and failures are decided in one place ([`jobs::Settled::of`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use moonengage_core::metrics;
use moonengage_queue::backend::QueueBackend;
use moonengage_queue::flush::Flusher;
use moonengage_queue::jobs::{self, Jobs, Queued};
use moonengage_queue::{Job, JobError};

use crate::Registration;
use crate::env::Env;

/// How a kind of job runs in a worker.
pub(crate) trait Handle: Job + Clone {
    /// Jobs of this kind run at once per process; `None` takes `worker.concurrency`.
    const CONCURRENCY: Option<usize> = None;

    /// Runs the job. `Ok` settles it done; see [`JobError`] for the rest.
    fn run(self, env: &Env) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Registers kind `J` with the monitor.
pub(crate) fn register<J: Handle>(monitor: Monitor, registration: &Registration) -> Monitor {
    let registration = registration.clone();
    monitor.register(move |_restarts| {
        let r = &registration;
        let queue = &r.env.settings.queue;
        let jobs = Jobs::<J>::new(r.env.pool.clone(), r.name.clone(), queue.lease());
        let acks = Flusher::start(
            jobs.clone(),
            queue.batch_size,
            Duration::from_millis(queue.flush_ms),
        );
        let concurrency = J::CONCURRENCY.unwrap_or(r.env.settings.worker.concurrency);
        WorkerBuilder::new(format!("{}-{}", r.name, J::KIND))
            .backend(QueueBackend::new(
                jobs,
                r.wakers.of(J::KIND),
                queue.batch_size.min(concurrency.max(1)),
                Duration::from_millis(queue.poll_interval_ms),
            ))
            .layer(metrics::JobMetricsLayer::new(J::KIND))
            .data(r.env.clone())
            .data(acks)
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .build(execute::<J>)
    })
}

/// Runs one job and waits until its outcome is durable. A job that did not succeed is an
/// `Err` for apalis (and the job metrics); the queue, not apalis, decides what happens next.
async fn execute<J: Handle>(
    queued: Queued<J>,
    env: Data<Arc<Env>>,
    acks: Data<Flusher<jobs::Settled>>,
) -> Result<(), BoxDynError> {
    let Queued {
        id,
        attempt,
        max_attempts,
        job,
    } = queued;
    let result = job.run(&env).await;
    if let Err(error) = &result {
        tracing::warn!(kind = J::KIND, job_id = id, attempt, %error, "job did not succeed");
    }
    let settled = jobs::Settled::of(id, attempt, max_attempts, &result, &env.settings.queue);
    acks.settle(settled).await?;
    result.map_err(Into::into)
}
