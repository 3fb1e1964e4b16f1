//! Wake-ups: every statement that queues work sends one `NOTIFY` naming its kind, and each
//! worker process holds a single LISTEN connection that wakes the claimers of that kind. The
//! poll interval remains the fallback (and what notices a retry's run time arriving).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

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
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(CHANNEL).await {
                        tracing::warn!(%error, "queue LISTEN failed; polling meanwhile");
                    } else {
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => self.wake(notification.payload()),
                                // The connection was lost and re-opened: anything may be due.
                                Ok(None) => {
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
                                Err(error) => {
                                    tracing::warn!(%error, "queue LISTEN lost; polling meanwhile");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "queue LISTEN unavailable; polling meanwhile"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
