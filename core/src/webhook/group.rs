//! Group commit of webhook deliveries. Each delivery must be durable before its 200, and at
//! thousands of deliveries a second a statement and a commit each would cost Postgres more than
//! the rest of the request together. Requests hand their rows to a few writer tasks instead;
//! a writer takes every delivery waiting at that moment (up to one statement's worth) and
//! stores them with one statement and one commit, then answers each. Under light load a
//! delivery is alone and waits for nothing; under heavy load batches grow by themselves.
//!
//! The writer is its own task, so a request whose client hung up still has its delivery
//! stored whole or not at all. If a batch fails, each delivery in it is tried alone, so one
//! bad delivery never fails the others.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::anyhow;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::events::{NewEvent, first_stored, insert};

/// Writers storing at once: one commits while the next gathers and sends its batch.
const WRITERS: usize = 2;

/// Deliveries waiting for a writer before requests wait to hand theirs over.
const WAITING: usize = 1_024;

/// One delivery handed to a writer, and where its answer goes.
struct Pending {
    rows: Vec<NewEvent>,
    done: oneshot::Sender<anyhow::Result<Vec<bool>>>,
}

/// The web process's handle on its writers; they stop when it is dropped.
#[derive(Clone)]
pub struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Starts the writers on this runtime.
    pub fn start(pool: PgPool) -> GroupWriter {
        let (queue, waiting) = mpsc::channel(WAITING);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(pool.clone(), waiting.clone()));
        }
        GroupWriter { queue }
    }

    /// Stores one delivery (at most one statement's worth of rows) with whatever else is
    /// waiting; returns, row by row, whether it was new.
    pub(super) async fn store(&self, rows: Vec<NewEvent>) -> anyhow::Result<Vec<bool>> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Pending { rows, done })
            .await
            .map_err(|_| anyhow!("the webhook writers stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the webhook writers stopped"))?
    }
}

async fn write_batches(pool: PgPool, waiting: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut bytes: usize = first.rows.iter().map(NewEvent::bytes).sum();
            let mut batch = vec![first];
            while bytes < moonengage_queue::STATEMENT_BYTES {
                let Ok(next) = waiting.try_recv() else {
                    break;
                };
                bytes += next.rows.iter().map(NewEvent::bytes).sum::<usize>();
                batch.push(next);
            }
            batch
        };
        write(&pool, batch).await;
    }
}

/// Stores a batch in one statement and answers each delivery; if that fails, each delivery is
/// stored alone, so only a delivery that fails by itself gets an error.
async fn write(pool: &PgPool, batch: Vec<Pending>) {
    let rows: Vec<&NewEvent> = batch.iter().flat_map(|p| &p.rows).collect();
    let result = insert(pool, &rows).await;
    match result {
        Ok(hashes) => {
            let mut hashes: HashSet<Vec<u8>> = hashes.into_iter().collect();
            for pending in batch {
                let stored = first_stored(&pending.rows, &mut hashes);
                let _ = pending.done.send(Ok(stored));
            }
        }
        Err(error) if batch.len() == 1 => {
            if let Some(pending) = batch.into_iter().next() {
                let _ = pending.done.send(Err(error));
            }
        }
        Err(_) => {
            for pending in batch {
                let rows: Vec<&NewEvent> = pending.rows.iter().collect();
                let answer = insert(pool, &rows)
                    .await
                    .map(|hashes| first_stored(&pending.rows, &mut hashes.into_iter().collect()));
                let _ = pending.done.send(answer);
            }
        }
    }
}
