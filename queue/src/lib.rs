//! The queue: our own Postgres storage behind apalis-core's `Backend`, and the only code that
//! names the queue's tables. apalis stays the worker runtime (Monitor, WorkerBuilder, layers,
//! graceful shutdown); what it runs comes from here.
//!
//! Two shapes of job, one mechanism:
//! - **Sends** are campaign deliveries: the `deliveries` row of a (campaign, subscriber) *is*
//!   the send job (`queued → sending → sent | failed | unknown | skipped`), so the claim that
//!   keeps anyone from getting a campaign twice and the job are one row ([`sends`]).
//! - **Webhook events**: an unprocessed `webhook_events` row is the job of processing it,
//!   claimed in batches and processed a batch per transaction ([`events`]).
//! - **Every other kind** (requests, notices, e-mail, key rotation) is a row of one typed
//!   `jobs` table: kind, a unique key per kind, an ids-only payload ([`jobs`]).
//!
//! All are claimed in batches with `FOR UPDATE SKIP LOCKED` and a lease, handed to apalis
//! through a [`backend::QueueBackend`], and settled in batched flushes ([`flush`]); a retry or a
//! deferral moves `run_at` of the same row. A lease outlives a dead worker only until it
//! expires: a send left `sending` then settles `unknown` (never resent), any other job is
//! retried. Wake-ups come from one `NOTIFY` per enqueuing statement ([`wake`]).

pub mod backend;
pub mod events;
pub mod flush;
pub mod job;
pub mod jobs;
pub mod reconnect;
pub mod run;
pub mod sends;
pub mod stats;
pub mod wake;
pub mod workers;

use std::time::Duration;

use serde::Deserialize;

pub use job::{Job, JobError};

/// How workers claim, lease and settle jobs (`[queue]` in the configuration).
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// Rows claimed per statement, and outcomes written per flush at most.
    pub batch_size: usize,
    /// Longest time a finished job's outcome waits before it is written with others.
    pub flush_ms: u64,
    /// Poll interval when no NOTIFY arrives, so a job whose run time comes (a retry) is seen.
    pub poll_interval_ms: u64,
    /// Worker heartbeat: it renews the leases of everything the worker holds.
    pub heartbeat_secs: u64,
    /// A lease lasts this many heartbeats; a worker silent that long is presumed dead and what
    /// it held is settled (sends) or retried (other jobs).
    pub missed_heartbeats: usize,
    /// Attempts a job gets before it is failed for good.
    pub max_attempts: i32,
    /// First retry delay; doubles with each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Cap of the retry delay.
    pub retry_max_ms: u64,
}

/// Most parameter bytes one statement carries. sqlx 0.9 leaves Nagle's algorithm on, and a
/// message larger than a fresh socket's 16 KiB send buffer leaves a tail that waits for
/// Postgres's delayed ACK: about 40 ms per statement, measured here as a fall from 96,000 to
/// 19,500 enqueued jobs/s. Batched statements are cut to stay under it.
pub const STATEMENT_BYTES: usize = 12 * 1024;

/// Cuts `items` into consecutive runs whose estimated parameter bytes (`size` per item) stay
/// under [`STATEMENT_BYTES`]; each run has at least one item.
pub fn runs<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let item_bytes = size(item);
        if i > start && bytes + item_bytes > STATEMENT_BYTES {
            runs.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

impl QueueSettings {
    /// How long a claim holds a row without a heartbeat renewing it.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1) * self.missed_heartbeats.max(1) as u64)
    }

    /// Exponential backoff with jitter: a random delay between half and all of
    /// `retry_base * 2^attempt` (capped), so retries of jobs that failed together spread out
    /// instead of arriving together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        reconnect::jittered(self.retry_base_ms, self.retry_max_ms, attempt)
    }

    /// The backoff after failed attempt number `attempt` (counted from 1, as the queue's rows
    /// count them): the first failure waits about `retry_base`, each later one twice as long.
    pub fn backoff_after(&self, attempt: i32) -> Duration {
        self.backoff(u32::try_from(attempt.max(1) - 1).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_stay_under_the_statement_size_and_keep_every_item_in_order() {
        let items: Vec<usize> = (0..1000).collect();
        let runs = runs(&items, |_| 100);
        assert!(runs.iter().all(|run| run.len() * 100 <= STATEMENT_BYTES));
        assert_eq!(runs.concat(), items);
        let huge = runs_of_one();
        assert_eq!(huge, vec![1, 1]);
    }

    fn runs_of_one() -> Vec<usize> {
        runs(&[1, 2], |_| STATEMENT_BYTES * 2)
            .iter()
            .map(|run| run.len())
            .collect()
    }
}
