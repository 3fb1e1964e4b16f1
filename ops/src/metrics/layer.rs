//! A tower layer around an apalis job handler: counts executions by outcome, times them, and
//! measures how long each job waited in the queue, for every queue without touching handlers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use apalis_core::task::Task;
use tower::{Layer, Service};

use super::families;

/// Adds job metrics to a worker: `WorkerBuilder::new(..).layer(JobMetricsLayer::new(QUEUE))`.
#[derive(Debug, Clone, Copy)]
pub struct JobMetricsLayer {
    queue: &'static str,
}

impl JobMetricsLayer {
    /// Metrics of the jobs of `queue`, labelled with its stable name.
    pub fn new(queue: &'static str) -> JobMetricsLayer {
        JobMetricsLayer { queue }
    }
}

impl<S> Layer<S> for JobMetricsLayer {
    type Service = JobMetrics<S>;

    fn layer(&self, inner: S) -> JobMetrics<S> {
        JobMetrics {
            inner,
            queue: self.queue,
        }
    }
}

/// The service [`JobMetricsLayer`] wraps a handler in.
#[derive(Debug, Clone)]
pub struct JobMetrics<S> {
    inner: S,
    queue: &'static str,
}

impl<S, Args> Service<Task<Args>> for JobMetrics<S>
where
    S: Service<Task<Args>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        // Read before the inner call: apalis counts the attempt once the job starts.
        let execution = Execution::start(self.queue, task.ctx().run_at(), task.ctx().attempt());
        let future = self.inner.call(task);
        Box::pin(async move {
            let result = future.await;
            execution.finish(result.is_ok());
            result
        })
    }
}

/// One running job; dropping it without `finish` (a cancelled job) still lowers the in-flight
/// gauge.
struct Execution {
    queue: &'static str,
    started: Instant,
}

impl Execution {
    fn start(queue: &'static str, run_at: Option<u64>, previous_attempts: usize) -> Execution {
        let f = families();
        if let Some(run_at) = run_at {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            let wait = (now - run_at as f64).max(0.0);
            f.job_wait.with_label_values(&[queue]).observe(wait);
        }
        if previous_attempts > 0 {
            f.job_retries.with_label_values(&[queue]).inc();
        }
        f.jobs_in_flight.with_label_values(&[queue]).inc();
        Execution {
            queue,
            started: Instant::now(),
        }
    }

    fn finish(self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        let f = families();
        f.job_executions
            .with_label_values(&[self.queue, outcome])
            .inc();
        f.job_duration
            .with_label_values(&[self.queue, outcome])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        families()
            .jobs_in_flight
            .with_label_values(&[self.queue])
            .dec();
    }
}
