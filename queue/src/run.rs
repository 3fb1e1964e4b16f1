//! Running a job of the generic table: the [`Run`] trait a kind implements for the environment
//! of the process that runs it, and the one apalis handler every kind is registered with.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis_core::error::BoxDynError;
use apalis_core::task::data::Data;

use crate::flush::Flusher;
use crate::jobs::{Jobs, Queued, Settled};
use crate::{Job, JobError, QueueSettings};

/// How a kind of job runs in a process whose shared environment is `E`.
pub trait Run<E>: Job + Clone {
    /// Jobs of this kind run at once per process; `None` takes the process's default.
    const CONCURRENCY: Option<usize> = None;

    /// Runs the job. `Ok` settles it done; see [`JobError`] for the rest.
    fn run(self, env: &E) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Where a process settles the jobs of one kind: the batched outcome writer and the retry
/// settings that decide what an outcome does to the row.
#[derive(Clone)]
pub struct Acks {
    flusher: Flusher<Settled>,
    settings: QueueSettings,
}

impl Acks {
    /// Starts the outcome writer of kind `J` for `jobs`.
    pub fn start<J: Job>(jobs: &Jobs<J>, settings: &QueueSettings) -> Acks {
        Acks {
            flusher: Flusher::start(
                jobs.clone(),
                settings.batch_size,
                Duration::from_millis(settings.flush_ms),
            ),
            settings: settings.clone(),
        }
    }
}

/// The apalis handler of every kind: runs the job and waits until its outcome is durable. A
/// job that did not succeed is an `Err` for apalis (and any metrics layer); the queue, not
/// apalis, decides what happens next ([`Settled::of`]).
pub async fn execute<J: Run<E>, E: Send + Sync + 'static>(
    queued: Queued<J>,
    env: Data<Arc<E>>,
    acks: Data<Acks>,
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
    let settled = Settled::of(id, attempt, max_attempts, &result, &acks.settings);
    acks.flusher.settle(settled).await?;
    result.map_err(Into::into)
}
