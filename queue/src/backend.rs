//! apalis's [`Backend`] over a claimable source: a claimer task takes batches of due rows (one
//! statement each, `FOR UPDATE SKIP LOCKED`, leased to this worker) as the worker has room for
//! them, and the worker pulls them one by one. On shutdown, rows claimed but not started are
//! given back at once instead of waiting for their lease to expire.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::layers::Identity;
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::worker::context::WorkerContext;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::reconnect::{self, Backoff};

/// Where a backend's rows come from.
pub trait Source: Send + Sync + 'static {
    /// One claimed row, as the handler receives it.
    type Item: Send + 'static;

    /// Claims up to `limit` due rows for this worker.
    fn claim(
        &self,
        limit: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<Claimed<Self::Item>>>> + Send;

    /// Gives back claimed rows that never started (shutdown), as if they were never claimed.
    fn release(&self, items: Vec<Self::Item>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A claimed row and what apalis's task context reports of it (job metrics read these).
pub struct Claimed<T> {
    /// The row.
    pub item: T,
    /// Attempts before this one.
    pub previous_attempts: usize,
    /// When the row became due, in Unix seconds.
    pub run_at: u64,
}

/// The backend a worker of one kind runs on.
pub struct QueueBackend<S: Source> {
    source: Arc<S>,
    wake: Arc<Notify>,
    batch: usize,
    poll: Duration,
    stop: CancellationToken,
    rx: Option<mpsc::Receiver<Claimed<S::Item>>>,
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S: Source> QueueBackend<S> {
    /// A backend claiming `batch` rows at a time from `source`, woken by `wake` (see
    /// [`crate::wake`]) or every `poll`.
    pub fn new(source: S, wake: Arc<Notify>, batch: usize, poll: Duration) -> QueueBackend<S> {
        QueueBackend {
            source: Arc::new(source),
            wake,
            batch: batch.max(1),
            poll,
            stop: CancellationToken::new(),
            rx: None,
            closing: None,
        }
    }

    fn receiver(&mut self) -> &mut mpsc::Receiver<Claimed<S::Item>> {
        self.rx.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.batch);
            tokio::spawn(claim_loop(
                self.source.clone(),
                tx,
                self.wake.clone(),
                self.poll,
                self.stop.clone(),
            ));
            rx
        })
    }
}

async fn claim_loop<S: Source>(
    source: Arc<S>,
    tx: mpsc::Sender<Claimed<S::Item>>,
    wake: Arc<Notify>,
    poll: Duration,
    stop: CancellationToken,
) {
    let half = (tx.max_capacity() / 2).max(1);
    let mut backoff = Backoff::default();
    loop {
        // Claim when half the buffer is free: fewer, larger claims (each costs a statement and
        // a commit) while the other half keeps the worker busy.
        let room = tokio::select! {
            permits = tx.reserve_many(half) => match permits {
                Ok(permits) => {
                    drop(permits);
                    tx.capacity().max(1)
                }
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let waiting = wake.notified();
        match source.claim(room).await {
            Ok(claimed) => {
                backoff.reset();
                reconnect::reached();
                let full = claimed.len() == room;
                let mut claimed = claimed.into_iter();
                while let Some(next) = claimed.next() {
                    if let Err(unsent) = tx.send(next).await {
                        let rest = std::iter::once(unsent.0.item)
                            .chain(claimed.map(|c| c.item))
                            .collect();
                        if let Err(error) = source.release(rest).await {
                            tracing::warn!(error = %format!("{error:#}"), "giving back claimed jobs failed; their leases will expire");
                        }
                        return;
                    }
                }
                if !full {
                    tokio::select! {
                        () = waiting => {}
                        () = tokio::time::sleep(poll) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
            Err(error) => {
                if reconnect::is_unreachable(&error) {
                    reconnect::lost(&error);
                } else {
                    tracing::warn!(error = %format!("{error:#}"), "claiming jobs failed; trying again");
                }
                // A wake-up (the LISTEN connection is back, or work was queued) ends the wait.
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_wait()) => {}
                    () = waiting => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// The backend never fails: claim errors are retried inside it, so a database outage does not
/// make apalis restart the worker in a loop.
pub type Never = std::convert::Infallible;

impl<S: Source> Backend for QueueBackend<S> {
    type Task = Task<S::Item>;
    type Error = Never;

    fn poll_ready(&mut self, _: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<(), Never>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Task<S::Item>, Never>>> {
        self.receiver().poll_recv(cx).map(|claimed| {
            claimed.map(|claimed| {
                Ok(TaskBuilder::new(claimed.item)
                    .attempt(claimed.previous_attempts)
                    .run_at_timestamp(claimed.run_at)
                    .build())
            })
        })
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<(), Never>> {
        if self.closing.is_none() {
            self.stop.cancel();
            let rx = self.rx.take();
            let source = self.source.clone();
            self.closing = Some(Box::pin(async move {
                let Some(mut rx) = rx else { return };
                rx.close();
                let mut unstarted = Vec::new();
                while let Some(claimed) = rx.recv().await {
                    unstarted.push(claimed.item);
                }
                if !unstarted.is_empty()
                    && let Err(error) = source.release(unstarted).await
                {
                    tracing::warn!(error = %format!("{error:#}"), "giving back claimed jobs failed; their leases will expire");
                }
            }));
        }
        match self.closing.as_mut() {
            Some(closing) => closing.as_mut().poll(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: Source> BackendConfig for QueueBackend<S> {
    type Args = S::Item;
    type Id = ();
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &() {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Identity {
        Identity::new()
    }
}
