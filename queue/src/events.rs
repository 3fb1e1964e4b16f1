//! Received webhook events: an unprocessed `webhook_events` row *is* the job of processing it,
//! so storing a delivery is one insert with no job rows, and erasing a person's pending events
//! is deleting them. Workers claim due rows in batches (`FOR UPDATE SKIP LOCKED`, leased) and
//! the worker marks a batch processed in the transaction that acted on it; what could not be
//! processed is settled here in one statement: retried after a backoff, parked as failed after
//! its last attempt, or given back unspent.
//!
//! One person's events are processed in the order they happened: a claim passes over an event
//! whose sender has an earlier one waiting for its retry or held by another claim, and processing locks a sender's
//! earlier unprocessed events and acts on them first (`moonengage_core::webhook`). A failed
//! event holds back only its sender's later ones, and only until it is parked.

use anyhow::Context as _;
use sqlx::PgPool;

use crate::QueueSettings;
use crate::backend::{Claimed, Source};
use crate::jobs::LEASE;

/// The kind name of webhook processing (wake-ups, metrics, live workers).
pub const KIND: &str = "webhook";

/// One claimed event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedEvent {
    /// `webhook_events.id`.
    pub id: i64,
    /// This attempt, counting from 1.
    pub attempt: i32,
    /// Its sender's blind index: the events of one sender stand or fall in order.
    pub sender_index: Option<Vec<u8>>,
    #[sqlx(rename = "run_at")]
    due_at: i64,
    claimed: bool,
}

/// The events of one claim, in the order received: processed together.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The events.
    pub events: Vec<ClaimedEvent>,
}

/// What happens to a claimed event that was not processed.
#[derive(Debug)]
pub struct Unfinished {
    id: i64,
    delay: f64,
    refund: bool,
    failed: bool,
    error: Option<String>,
}

impl Unfinished {
    /// Processing `event` failed with `error`: it runs again after a backoff, or is parked as
    /// failed when that was its last attempt.
    pub fn retry(event: &ClaimedEvent, error: String, settings: &QueueSettings) -> Unfinished {
        Unfinished {
            id: event.id,
            delay: settings.backoff_after(event.attempt).as_secs_f64(),
            refund: false,
            failed: event.attempt.max(1) >= settings.max_attempts,
            error: Some(error),
        }
    }

    /// `event` was not tried (an earlier event of its sender failed, or the worker stops): it
    /// goes back to the queue with its attempt unspent.
    pub fn give_back(event: &ClaimedEvent) -> Unfinished {
        Unfinished {
            id: event.id,
            delay: 0.0,
            refund: true,
            failed: false,
            error: None,
        }
    }
}

/// Claims and settles webhook events for one worker.
#[derive(Clone)]
pub struct WebhookEvents {
    pool: PgPool,
    worker: String,
    batch: usize,
    max_attempts: i32,
    silent: std::time::Duration,
}

impl WebhookEvents {
    /// The events worker `worker` claims, `settings.batch_size` at a time.
    pub fn new(pool: PgPool, worker: impl Into<String>, settings: &QueueSettings) -> Self {
        WebhookEvents {
            pool,
            worker: worker.into(),
            batch: settings.batch_size.max(1),
            max_attempts: settings.max_attempts,
            silent: settings.lease(),
        }
    }

    /// Settles events this worker holds and did not process, in one statement.
    pub async fn settle(&self, unfinished: &[Unfinished]) -> anyhow::Result<()> {
        if unfinished.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE webhook_events e SET
                 attempts = e.attempts - o.refund::int,
                 run_at = now() + make_interval(secs => o.delay),
                 failed_at = CASE WHEN o.failed THEN now() END,
                 last_error = coalesce(o.error, e.last_error),
                 lease_until = NULL, locked_by = NULL
             FROM unnest($1::bigint[], $2::float8[], $3::bool[], $4::bool[], $5::text[])
                 AS o(id, delay, refund, failed, error)
             WHERE e.id = o.id AND e.locked_by = $6
               AND e.processed_at IS NULL AND e.failed_at IS NULL",
        )
        .bind(unfinished.iter().map(|u| u.id).collect::<Vec<_>>())
        .bind(unfinished.iter().map(|u| u.delay).collect::<Vec<_>>())
        .bind(unfinished.iter().map(|u| u.refund).collect::<Vec<_>>())
        .bind(unfinished.iter().map(|u| u.failed).collect::<Vec<_>>())
        .bind(
            unfinished
                .iter()
                .map(|u| u.error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(&self.worker)
        .execute(&self.pool)
        .await
        .context("settling unprocessed webhook events")?;
        Ok(())
    }
}

/// The claim of due events: `$1` how many, `$2` lease, `$3` worker, `$4` attempts allowed, `$5`
/// how long a holder may be silent before its events are taken back. An event whose sender has
/// an earlier event waiting (to be retried, or held by a live worker) is not claimed.
static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH picked AS (
             SELECT e.id FROM webhook_events e
             WHERE e.processed_at IS NULL AND e.failed_at IS NULL AND e.run_at <= now()
               AND NOT {e_held}
               AND NOT EXISTS (
                   SELECT 1 FROM webhook_events b
                   WHERE b.sender_index = e.sender_index
                     AND b.processed_at IS NULL AND b.failed_at IS NULL
                     AND (b.event_at, b.id) < (e.event_at, e.id)
                     AND (b.run_at > now() OR {b_held}))
             ORDER BY e.id
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE webhook_events e SET attempts = e.attempts + 1, locked_by = $3,
             lease_until = CASE WHEN e.attempts < $4
                                THEN now() + make_interval(secs => $2) END,
             failed_at = CASE WHEN e.attempts >= $4 THEN now() END,
             last_error = CASE WHEN e.attempts >= $4
                               THEN 'lease expired on the last attempt'
                               ELSE e.last_error END
         FROM picked WHERE e.id = picked.id
         RETURNING e.id, e.attempts AS attempt, e.sender_index,
                   extract(epoch FROM e.run_at)::bigint AS run_at,
                   e.failed_at IS NULL AS claimed",
        e_held = crate::workers::held_by_live_worker("e", "$5"),
        b_held = crate::workers::held_by_live_worker("b", "$5"),
    )
});

impl Source for WebhookEvents {
    type Item = Batch;

    /// One batch per claim, whatever room the worker has: a batch is one task. An event whose
    /// lease expired on its last attempt (its worker died) is parked as failed instead.
    async fn claim(&self, _limit: usize) -> anyhow::Result<Vec<Claimed<Batch>>> {
        let mut events: Vec<ClaimedEvent> = sqlx::query_as(sqlx::AssertSqlSafe(CLAIM.as_str()))
            .bind(i64::try_from(self.batch).unwrap_or(i64::MAX))
            .bind(LEASE.as_secs_f64())
            .bind(&self.worker)
            .bind(self.max_attempts)
            .bind(self.silent.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .context("claiming webhook events")?;
        events.retain(|event| event.claimed);
        if events.is_empty() {
            return Ok(Vec::new());
        }
        events.sort_by_key(|event| event.id);
        let previous_attempts = events.iter().map(|e| e.attempt - 1).max().unwrap_or(0);
        let run_at = events.iter().map(|e| e.due_at).min().unwrap_or(0);
        Ok(vec![Claimed {
            previous_attempts: usize::try_from(previous_attempts).unwrap_or(0),
            run_at: u64::try_from(run_at).unwrap_or(0),
            item: Batch { events },
        }])
    }

    async fn release(&self, items: Vec<Batch>) -> anyhow::Result<()> {
        let unfinished: Vec<Unfinished> = items
            .iter()
            .flat_map(|batch| batch.events.iter().map(Unfinished::give_back))
            .collect();
        self.settle(&unfinished).await
    }
}
