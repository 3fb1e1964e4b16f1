//! Every kind of job but sends, in one typed `jobs` table: kind, a unique key per kind, an
//! ids-only JSON payload, the person it is about (a foreign key, so erasure removes it), run
//! time, attempts and a lease. A job that succeeds is deleted (the cheapest acknowledgement:
//! no new row version, no index entry); one that fails for good stays `failed`, with its last
//! error, until retention removes it. The key is unique while the job waits, runs or has
//! failed, so queuing the same work twice meanwhile adds nothing; each caller's own state (an
//! event processed, a request completed) keeps work from being done twice after that.
//!
//! A claimed job stays `queued` with a live lease ([`LEASE`]): the claim touches no indexed
//! column, so Postgres updates it in place (HOT) without new index entries, and a claim simply
//! passes over leased rows and takes back those whose lease expired (their worker died).

use std::marker::PhantomData;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::QueueSettings;
use crate::backend::{Claimed, Source};
use crate::flush::Sink;
use crate::job::{Job, JobError};

mod enqueue;

pub use enqueue::{enqueue, enqueue_after, enqueue_many};

/// How long a claim holds a job. Jobs are short (a message, an e-mail, a batch of a key
/// rotation) and every kind is idempotent, so a lease is not renewed: a job that outlives it
/// may run again. One whose worker died runs again sooner: as soon as the worker has been
/// silent for a heartbeat lease (see `workers::held_by_live_worker`).
pub const LEASE: Duration = Duration::from_secs(300);

/// One claimed job.
#[derive(Debug, Clone)]
pub struct Queued<J> {
    /// The row.
    pub id: i64,
    /// This attempt, counting from 1.
    pub attempt: i32,
    /// Attempts it may have.
    pub max_attempts: i32,
    /// The payload.
    pub job: J,
}

/// What settling does to a row of `jobs` (`jobs.status`; the SQL of this module names the same
/// values): a job that succeeded is deleted, others are queued again or failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Succeeded: the row is deleted (never stored).
    Done,
    /// Due again at its run time (a retry, a deferral, a job given back).
    Queued,
    /// Failed for good; kept for a while for inspection.
    Failed,
}

impl JobStatus {
    /// The stored name (`done` only ever travels to the settle statement, which deletes).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Done => "done",
            JobStatus::Queued => "queued",
            JobStatus::Failed => "failed",
        }
    }
}

/// How a job's row is settled.
#[derive(Debug)]
pub struct Settled {
    id: i64,
    status: JobStatus,
    delay: Option<f64>,
    refund: bool,
    error: Option<String>,
}

impl Settled {
    /// Parameter bytes of the outcome in a settle statement.
    fn bytes(&self) -> usize {
        60 + self.status.as_str().len() + self.error.as_ref().map_or(0, String::len)
    }

    /// What `result` of attempt `attempt` (of `max_attempts`) does to the row of job `id`.
    pub fn of(
        id: i64,
        attempt: i32,
        max_attempts: i32,
        result: &Result<(), JobError>,
        settings: &QueueSettings,
    ) -> Settled {
        let (status, delay, refund, error) = match result {
            Ok(()) => (JobStatus::Done, None, false, None),
            Err(JobError::Retry {
                spend_attempt: true,
                reason,
                ..
            }) if attempt >= max_attempts => (JobStatus::Failed, None, false, Some(reason.clone())),
            Err(JobError::Retry {
                after,
                spend_attempt,
                reason,
            }) => {
                let after = after.unwrap_or_else(|| settings.backoff_after(attempt));
                (
                    JobStatus::Queued,
                    Some(after.as_secs_f64()),
                    !spend_attempt,
                    Some(reason.clone()),
                )
            }
            Err(JobError::Park) => (JobStatus::Queued, Some(f64::INFINITY), true, None),
            Err(JobError::Fatal(reason)) => (JobStatus::Failed, None, false, Some(reason.clone())),
        };
        Settled {
            id,
            status,
            delay,
            refund,
            error,
        }
    }
}

/// Claims and settles the jobs of kind `J` for one worker.
pub struct Jobs<J> {
    pool: PgPool,
    worker: String,
    lease: Duration,
    silent: Duration,
    _kind: PhantomData<fn() -> J>,
}

/// The claim of a kind's due jobs: `$1` kind, `$2` how many, `$3` lease, `$4` worker, `$5` how
/// long a holder may be silent before its jobs are taken back.
static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH picked AS (
             SELECT id FROM jobs
             WHERE kind = $1 AND status = 'queued' AND run_at <= now()
               AND NOT {held}
             ORDER BY run_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE jobs j SET attempts = j.attempts + 1,
             lease_until = now() + make_interval(secs => $3), locked_by = $4
         FROM picked WHERE j.id = picked.id
         RETURNING j.id, j.payload, j.attempts, j.max_attempts,
                   extract(epoch FROM j.run_at)::bigint AS run_at",
        held = crate::workers::held_by_live_worker("jobs", "$5")
    )
});

impl<J> Clone for Jobs<J> {
    fn clone(&self) -> Self {
        Jobs {
            pool: self.pool.clone(),
            worker: self.worker.clone(),
            lease: self.lease,
            silent: self.silent,
            _kind: PhantomData,
        }
    }
}

impl<J: Job> Jobs<J> {
    /// The jobs of kind `J` as worker `worker` holds them, each leased for [`LEASE`]; a job
    /// whose holder has not heartbeated for `silent` is taken back before that.
    pub fn new(pool: PgPool, worker: impl Into<String>, silent: Duration) -> Jobs<J> {
        Jobs {
            pool,
            worker: worker.into(),
            lease: LEASE,
            silent,
            _kind: PhantomData,
        }
    }

    /// Writes the outcomes of rows this worker holds: one statement per run of about 12 KiB
    /// of outcomes (see `STATEMENT_BYTES`).
    pub async fn settle(&self, batch: &[Settled]) -> sqlx::Result<()> {
        for run in crate::runs(batch, Settled::bytes) {
            self.settle_run(run).await?;
        }
        Ok(())
    }

    async fn settle_run(&self, batch: &[Settled]) -> sqlx::Result<()> {
        let (done, rest): (Vec<&Settled>, Vec<&Settled>) =
            batch.iter().partition(|s| s.status == JobStatus::Done);
        let done: Vec<i64> = done.iter().map(|s| s.id).collect();
        let ids: Vec<i64> = rest.iter().map(|s| s.id).collect();
        let statuses: Vec<&str> = rest.iter().map(|s| s.status.as_str()).collect();
        let parked: Vec<bool> = rest
            .iter()
            .map(|s| s.delay.is_some_and(f64::is_infinite))
            .collect();
        let delays: Vec<Option<f64>> = rest
            .iter()
            .map(|s| s.delay.filter(|d| d.is_finite()))
            .collect();
        let refunds: Vec<bool> = rest.iter().map(|s| s.refund).collect();
        let errors: Vec<Option<String>> = rest.iter().map(|s| s.error.clone()).collect();
        // Succeeded jobs are deleted by id (an index look-up each); the others are joined. A
        // job is held exactly while it has a lease: testing the lease, not the status, keeps
        // Postgres on the primary key rather than the lease index.
        sqlx::query(
            "WITH done AS (
                 DELETE FROM jobs
                 WHERE id = ANY($8::bigint[]) AND locked_by = $7 AND lease_until IS NOT NULL
             )
             UPDATE jobs j SET
                 status = o.status,
                 run_at = CASE WHEN o.parked THEN 'infinity'
                               WHEN o.delay IS NOT NULL THEN now() + make_interval(secs => o.delay)
                               ELSE j.run_at END,
                 attempts = j.attempts - o.refund::int,
                 last_error = coalesce(o.error, j.last_error),
                 lease_until = NULL,
                 finished_at = CASE WHEN o.status = 'failed' THEN now() END
             FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::float8[], $5::bool[],
                         $6::text[]) AS o(id, status, parked, delay, refund, error)
             WHERE j.id = o.id AND j.locked_by = $7 AND j.lease_until IS NOT NULL",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&parked)
        .bind(&delays)
        .bind(&refunds)
        .bind(&errors)
        .bind(&self.worker)
        .bind(&done)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    payload: serde_json::Value,
    attempts: i32,
    max_attempts: i32,
    run_at: i64,
}

impl<J: Job> Source for Jobs<J> {
    type Item = Queued<J>;

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<Claimed<Queued<J>>>> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(sqlx::AssertSqlSafe(CLAIM.as_str()))
            .bind(J::KIND)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(self.lease.as_secs_f64())
            .bind(&self.worker)
            .bind(self.silent.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .with_context(|| format!("claiming {} jobs", J::KIND))?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut failed = Vec::new();
        for row in rows {
            if row.attempts > row.max_attempts {
                // Its last attempt's worker died holding it.
                failed.push(Settled {
                    id: row.id,
                    status: JobStatus::Failed,
                    delay: None,
                    refund: false,
                    error: Some("lease expired on the last attempt".into()),
                });
                continue;
            }
            match serde_json::from_value::<J>(row.payload) {
                Ok(job) => claimed.push(Claimed {
                    previous_attempts: usize::try_from(row.attempts - 1).unwrap_or(0),
                    run_at: u64::try_from(row.run_at).unwrap_or(0),
                    item: Queued {
                        id: row.id,
                        attempt: row.attempts,
                        max_attempts: row.max_attempts,
                        job,
                    },
                }),
                Err(error) => {
                    tracing::error!(kind = J::KIND, job_id = row.id, %error, "unreadable job payload; failed for good");
                    failed.push(Settled {
                        id: row.id,
                        status: JobStatus::Failed,
                        delay: None,
                        refund: false,
                        error: Some(format!("unreadable payload: {error}")),
                    });
                }
            }
        }
        if !failed.is_empty() {
            self.settle(&failed).await?;
        }
        Ok(claimed)
    }

    async fn release(&self, items: Vec<Queued<J>>) -> anyhow::Result<()> {
        let batch: Vec<Settled> = items
            .into_iter()
            .map(|queued| Settled {
                id: queued.id,
                status: JobStatus::Queued,
                delay: Some(0.0),
                refund: true,
                error: None,
            })
            .collect();
        self.settle(&batch)
            .await
            .with_context(|| format!("giving back {} jobs", J::KIND))
    }
}

impl<J: Job> Sink for Jobs<J> {
    type Outcome = Settled;

    async fn write(&self, batch: &[Settled]) -> anyhow::Result<()> {
        self.settle(batch)
            .await
            .with_context(|| format!("writing {} job outcomes", J::KIND))
    }
}

/// Retention's statement for failed jobs: deletes at most `$2` jobs failed for good more than
/// `$1` seconds ago.
pub const PRUNE_FINISHED: &str = "DELETE FROM jobs WHERE id IN (
     SELECT id FROM jobs
     WHERE status = 'failed' AND finished_at < now() - make_interval(secs => $1)
     LIMIT $2)";

/// Deletes the jobs naming a person (`subscriber_id`, an indexed look-up). Returns how many.
pub async fn delete_about(conn: &mut sqlx::PgConnection, subscriber_id: i64) -> sqlx::Result<u64> {
    let deleted = sqlx::query("DELETE FROM jobs WHERE subscriber_id = $1")
        .bind(subscriber_id)
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected())
}
