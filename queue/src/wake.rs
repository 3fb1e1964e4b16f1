//! Wake-ups: every statement that queues work sends one `NOTIFY` naming its kind, and each
//! worker process holds a single LISTEN connection that wakes the claimers of that kind. The
//! poll interval remains the fallback (and what notices a retry's run time arriving).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::reconnect::{self, Backoff};

/// The channel every enqueue notifies; the payload is the kind.
pub const CHANNEL: &str = "moonengage_queue";

/// Sends the wake-up for `kind` (inside the caller's transaction, so it is delivered at commit).
pub async fn notify<'e>(executor: impl sqlx::PgExecutor<'e>, kind: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(kind)
        .execute(executor)
        .await?;
    Ok(())
}

/// Wake-ups sent after the caller's commit and coalesced, for a busy enqueuer (the web process
/// taking webhooks). A `NOTIFY` inside a transaction holds a database-wide lock until its commit
/// is flushed, so one per transaction makes every such commit wait for the previous one
/// (measured with `bench/commit-notify`: about 1,100 commits/s with it against 3,300 without).
/// Here at most one `NOTIFY` is in flight, outside any transaction, naming every kind woken
/// while the previous one was sent; claimers still poll if one is lost.
#[derive(Clone)]
pub struct Nudges {
    pending: Arc<Mutex<HashSet<&'static str>>>,
    ready: Arc<Notify>,
}

impl Nudges {
    /// Starts the task that sends the wake-ups through `pool`.
    pub fn start(pool: PgPool) -> Nudges {
        let nudges = Nudges {
            pending: Arc::default(),
            ready: Arc::default(),
        };
        let task = nudges.clone();
        tokio::spawn(async move {
            loop {
                task.ready.notified().await;
                let kinds: Vec<&'static str> = task
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain()
                    .collect();
                for kind in kinds {
                    if let Err(error) = notify(&pool, kind).await {
                        tracing::debug!(%error, kind, "wake-up not sent; claimers poll");
                    }
                }
            }
        });
        nudges
    }

    /// Wakes the claimers of `kind` soon; call after the work is committed.
    pub fn wake(&self, kind: &'static str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kind);
        self.ready.notify_one();
    }
}

/// The process's wake-ups, one [`Notify`] per kind.
#[derive(Clone, Default)]
pub struct Wakers {
    kinds: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Wakers {
    /// The wake-up of `kind`, shared by every claimer of that kind in this process.
    pub fn of(&self, kind: &str) -> Arc<Notify> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds.entry(kind.to_owned()).or_default().clone()
    }

    fn wake(&self, kind: &str) {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = kinds.get(kind) {
            notify.notify_waiters();
            notify.notify_one();
        }
    }

    /// Listens until the process ends; a lost connection is re-opened after a pause (polling
    /// carries the work meanwhile).
    pub async fn listen(self, pool: PgPool) {
        let mut backoff = Backoff::default();
        loop {
            let listening = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listening.await {
                Ok(mut listener) => {
                    backoff.reset();
                    reconnect::reached();
                    // Whatever was queued while nobody listened is due now.
                    self.wake_all();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(notification)) => self.wake(notification.payload()),
                            // The connection was lost and re-opened (sqlx listens again on
                            // the new one): anything may be due.
                            Ok(None) => self.wake_all(),
                            Err(error) => {
                                report_lost(error);
                                break;
                            }
                        }
                    }
                }
                Err(error) => report_lost(error),
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }

    /// Wakes the claimers of every kind.
    fn wake_all(&self) {
        let kinds: Vec<String> = self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for kind in kinds {
            self.wake(&kind);
        }
    }
}

/// The LISTEN connection failed: claimers poll meanwhile; a lost database is reported once for
/// the process.
fn report_lost(error: sqlx::Error) {
    if reconnect::sqlx_unreachable(&error) {
        reconnect::lost(&error.into());
    } else {
        tracing::warn!(%error, "queue LISTEN failed; polling meanwhile");
    }
}
