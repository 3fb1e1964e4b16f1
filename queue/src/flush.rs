//! Batched acknowledgement: outcomes of finished jobs are written together, one statement per
//! `batch_size` outcomes or per `flush_ms`, whichever comes first. A job is done only when its
//! outcome is durable (its handler waits for the flush), so apalis's "done" never runs ahead of
//! the database; a flush that fails is retried until it lands. If the process dies first, the
//! rows keep their lease and settle as any dead worker's do.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::reconnect::{self, Backoff};

/// Writes one batch of outcomes in one statement.
pub trait Sink: Send + Sync + 'static {
    /// What a finished job reports.
    type Outcome: Send + 'static;

    /// Writes `batch`; an error leaves nothing written (one statement), so it is retried whole.
    fn write(&self, batch: &[Self::Outcome]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The handle jobs settle through; cheap to clone.
pub struct Flusher<O> {
    tx: mpsc::UnboundedSender<(O, oneshot::Sender<()>)>,
}

impl<O> Clone for Flusher<O> {
    fn clone(&self) -> Self {
        Flusher {
            tx: self.tx.clone(),
        }
    }
}

/// The flusher has stopped (the process is going down): the outcome was not written.
#[derive(Debug, thiserror::Error)]
#[error("the outcome writer has stopped")]
pub struct Stopped;

impl<O: Send + 'static> Flusher<O> {
    /// Starts the writer task of `sink`.
    pub fn start<S: Sink<Outcome = O>>(sink: S, max: usize, every: Duration) -> Flusher<O> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(sink, rx, max.max(1), every));
        Flusher { tx }
    }

    /// Queues `outcome` for the next flush and waits until it is durable.
    pub async fn settle(&self, outcome: O) -> Result<(), Stopped> {
        let (done, written) = oneshot::channel();
        self.tx.send((outcome, done)).map_err(|_| Stopped)?;
        written.await.map_err(|_| Stopped)
    }
}

async fn run<S: Sink>(
    sink: S,
    mut rx: mpsc::UnboundedReceiver<(S::Outcome, oneshot::Sender<()>)>,
    max: usize,
    every: Duration,
) {
    let mut outcomes = Vec::with_capacity(max);
    let mut waiters = Vec::with_capacity(max);
    while let Some((outcome, waiter)) = rx.recv().await {
        outcomes.push(outcome);
        waiters.push(waiter);
        let deadline = Instant::now() + every;
        while outcomes.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((outcome, waiter))) => {
                    outcomes.push(outcome);
                    waiters.push(waiter);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut backoff = Backoff::default();
        while let Err(error) = sink.write(&outcomes).await {
            if reconnect::is_unreachable(&error) {
                reconnect::lost(&error);
            } else {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    outcomes = outcomes.len(),
                    "writing job outcomes failed; trying again"
                );
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
        reconnect::reached();
        outcomes.clear();
        for waiter in waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}
