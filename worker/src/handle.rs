//! The one generic registration of a kind of job with apalis: a [`QueueBackend`] over the
//! kind's rows, job metrics, the shared [`Env`], a concurrency limit, and the queue's handler
//! ([`run::execute`]), which runs the job and settles its row through the batched writer.

use std::time::Duration;

use apalis::prelude::*;
use moonengage_ops::metrics;
use moonengage_queue::backend::QueueBackend;
use moonengage_queue::jobs::Jobs;
use moonengage_queue::run::{self, Acks, Run};

use crate::Registration;
use crate::env::Env;

/// Registers kind `J` with the monitor.
pub(crate) fn register<J: Run<Env>>(monitor: Monitor, registration: &Registration) -> Monitor {
    let registration = registration.clone();
    monitor.register(move |_restarts| {
        let r = &registration;
        let queue = &r.env.settings.queue;
        let jobs = Jobs::<J>::new(
            r.env.pool.clone(),
            r.name.clone(),
            r.env.settings.queue.lease(),
        );
        let acks = Acks::start(&jobs, queue);
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
            .build(run::execute::<J, Env>)
    })
}
