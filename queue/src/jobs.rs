//! Every kind of job but sends, in one typed `jobs` table: kind, a unique key per kind, an
//! ids-only JSON payload, the person it is about (a foreign key, so erasure removes it), run
//! time, attempts and a lease. Success marks the row `done` (retention removes it a day later),
//! so queuing the same key again in the meantime adds nothing.

use std::marker::PhantomData;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::backend::{Claimed, Source};
use crate::flush::Sink;
use crate::job::{Job, JobError};
use crate::{QueueSettings, wake};

/// Queues `job` from our own SQL, so it commits or rolls back with the rows it belongs to
/// (pass a transaction). Returns whether this call added it (false: the key was queued before).
pub async fn enqueue<'e, J: Job>(
    executor: impl sqlx::PgExecutor<'e>,
    job: &J,
    max_attempts: i32,
) -> anyhow::Result<bool> {
    enqueue_after(executor, job, Duration::ZERO, max_attempts).await
}

/// [`enqueue`], due only after `delay`.
pub async fn enqueue_after<'e, J: Job>(
    executor: impl sqlx::PgExecutor<'e>,
    job: &J,
    delay: Duration,
    max_attempts: i32,
) -> anyhow::Result<bool> {
    let added = enqueue_many(executor, std::slice::from_ref(job), delay, max_attempts).await?;
    Ok(added == 1)
}

/// Queues many jobs of one kind in one statement (and one wake-up); returns how many were new.
pub async fn enqueue_many<'e, J: Job>(
    executor: impl sqlx::PgExecutor<'e>,
    jobs: &[J],
    delay: Duration,
    max_attempts: i32,
) -> anyhow::Result<u64> {
    let mut keys = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut subscribers = Vec::with_capacity(jobs.len());
    for job in jobs {
        keys.push(job.key());
        payloads.push(serde_json::to_value(job).context("encoding a job payload")?);
        subscribers.push(job.subscriber_id());
    }
    let added: i64 = sqlx::query_scalar(
        "WITH added AS (
             INSERT INTO jobs (kind, key, payload, subscriber_id, run_at, max_attempts)
             SELECT $1, k, p, s, now() + make_interval(secs => $5), $6
             FROM unnest($2::text[], $3::jsonb[], $4::bigint[]) AS j(k, p, s)
             ON CONFLICT (kind, key) DO NOTHING
             RETURNING 1
         )
         SELECT count(*) FROM added, LATERAL (SELECT pg_notify($7, $1)) woken",
    )
    .bind(J::KIND)
    .bind(&keys)
    .bind(&payloads)
    .bind(&subscribers)
    .bind(delay.as_secs_f64())
    .bind(J::MAX_ATTEMPTS.unwrap_or(max_attempts))
    .bind(wake::CHANNEL)
    .fetch_one(executor)
    .await
    .with_context(|| format!("queuing {} job(s)", J::KIND))?;
    Ok(u64::try_from(added).unwrap_or(0))
}

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

/// How a job's row is settled.
#[derive(Debug)]
pub struct Settled {
    id: i64,
    status: &'static str,
    delay: Option<f64>,
    refund: bool,
    error: Option<String>,
}

impl Settled {
    /// What `result` of attempt `attempt` (of `max_attempts`) does to the row of job `id`.
    pub fn of(
        id: i64,
        attempt: i32,
        max_attempts: i32,
        result: &Result<(), JobError>,
        settings: &QueueSettings,
    ) -> Settled {
        let (status, delay, refund, error) = match result {
            Ok(()) => ("done", None, false, None),
            Err(JobError::Retry {
                spend_attempt: true,
                reason,
                ..
            }) if attempt >= max_attempts => ("failed", None, false, Some(reason.clone())),
            Err(JobError::Retry {
                after,
                spend_attempt,
                reason,
            }) => {
                let after = after.unwrap_or_else(|| {
                    settings.backoff(u32::try_from(attempt.max(1) - 1).unwrap_or(0))
                });
                (
                    "queued",
                    Some(after.as_secs_f64()),
                    !spend_attempt,
                    Some(reason.clone()),
                )
            }
            Err(JobError::Park) => ("queued", Some(f64::INFINITY), true, None),
            Err(JobError::Fatal(reason)) => ("failed", None, false, Some(reason.clone())),
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
    _kind: PhantomData<fn() -> J>,
}

impl<J> Clone for Jobs<J> {
    fn clone(&self) -> Self {
        Jobs {
            pool: self.pool.clone(),
            worker: self.worker.clone(),
            lease: self.lease,
            _kind: PhantomData,
        }
    }
}

impl<J: Job> Jobs<J> {
    /// The jobs of kind `J` as worker `worker` holds them, leased for `lease`.
    pub fn new(pool: PgPool, worker: impl Into<String>, lease: Duration) -> Jobs<J> {
        Jobs {
            pool,
            worker: worker.into(),
            lease,
            _kind: PhantomData,
        }
    }

    /// Writes the outcomes of rows this worker holds, in one statement.
    pub async fn settle(&self, batch: &[Settled]) -> sqlx::Result<()> {
        let ids: Vec<i64> = batch.iter().map(|s| s.id).collect();
        let statuses: Vec<&str> = batch.iter().map(|s| s.status).collect();
        let parked: Vec<bool> = batch
            .iter()
            .map(|s| s.delay.is_some_and(f64::is_infinite))
            .collect();
        let delays: Vec<Option<f64>> = batch
            .iter()
            .map(|s| s.delay.filter(|d| d.is_finite()))
            .collect();
        let refunds: Vec<bool> = batch.iter().map(|s| s.refund).collect();
        let errors: Vec<Option<String>> = batch.iter().map(|s| s.error.clone()).collect();
        sqlx::query(
            "UPDATE jobs j SET
                 status = o.status,
                 run_at = CASE WHEN o.parked THEN 'infinity'
                               WHEN o.delay IS NOT NULL THEN now() + make_interval(secs => o.delay)
                               ELSE j.run_at END,
                 attempts = j.attempts - o.refund::int,
                 last_error = coalesce(o.error, j.last_error),
                 lease_until = NULL,
                 finished_at = CASE WHEN o.status IN ('done', 'failed') THEN now() END
             FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::float8[], $5::bool[], $6::text[])
                 AS o(id, status, parked, delay, refund, error)
             WHERE j.id = o.id AND j.status = 'running' AND j.locked_by = $7",
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(&parked)
        .bind(&delays)
        .bind(&refunds)
        .bind(&errors)
        .bind(&self.worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    payload: serde_json::Value,
    attempts: i32,
    max_attempts: i32,
    run_at: i64,
}

impl<J: Job> Source for Jobs<J> {
    type Item = Queued<J>;

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<Claimed<Queued<J>>>> {
        let rows: Vec<Row> = sqlx::query_as(
            "WITH picked AS (
                 SELECT id FROM jobs
                 WHERE kind = $1 AND status = 'queued' AND run_at <= now()
                 ORDER BY run_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE jobs j SET status = 'running', attempts = j.attempts + 1,
                 lease_until = now() + make_interval(secs => $3), locked_by = $4
             FROM picked WHERE j.id = picked.id
             RETURNING j.id, j.payload, j.attempts, j.max_attempts,
                       extract(epoch FROM j.run_at)::bigint AS run_at",
        )
        .bind(J::KIND)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.lease.as_secs_f64())
        .bind(&self.worker)
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("claiming {} jobs", J::KIND))?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
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
                    unreadable.push(Settled {
                        id: row.id,
                        status: "failed",
                        delay: None,
                        refund: false,
                        error: Some(format!("unreadable payload: {error}")),
                    });
                }
            }
        }
        if !unreadable.is_empty() {
            self.settle(&unreadable).await?;
        }
        Ok(claimed)
    }

    async fn release(&self, items: Vec<Queued<J>>) -> anyhow::Result<()> {
        let batch: Vec<Settled> = items
            .into_iter()
            .map(|queued| Settled {
                id: queued.id,
                status: "queued",
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

/// Retries every running job whose lease expired (its worker died): the attempt it spent
/// counts, and a job out of attempts fails for good.
pub async fn retry_expired(pool: &PgPool) -> sqlx::Result<u64> {
    let expired = sqlx::query(
        "UPDATE jobs SET
             status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
             last_error = 'lease expired', lease_until = NULL, run_at = now()
         WHERE status = 'running' AND lease_until < now()",
    )
    .execute(pool)
    .await?;
    Ok(expired.rows_affected())
}

/// Retention's statement for finished jobs: deletes at most `$2` jobs finished (done, or
/// failed for good) more than `$1` seconds ago.
pub const PRUNE_FINISHED: &str = "DELETE FROM jobs WHERE id IN (
     SELECT id FROM jobs
     WHERE status IN ('done', 'failed') AND finished_at < now() - make_interval(secs => $1)
     LIMIT $2)";

/// Whether a job of `kind` with `key` is still to run (queued or running): retention keeps a
/// webhook event while its job may still need it.
pub fn pending_sql(kind_param: &str, key_expr: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM jobs j WHERE j.kind = {kind_param} AND j.key = {key_expr}
                 AND j.status IN ('queued', 'running'))"
    )
}

/// Deletes the jobs about a person: those naming them (`subscriber_id`) and those of `kind`
/// whose key is in `keys` (their webhook events). Both look-ups use an index. Returns how many.
pub async fn delete_about(
    conn: &mut sqlx::PgConnection,
    subscriber_id: Option<i64>,
    kind: &str,
    keys: &[String],
) -> sqlx::Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM jobs
         WHERE ($1::bigint IS NOT NULL AND subscriber_id = $1) OR (kind = $2 AND key = ANY($3))",
    )
    .bind(subscriber_id)
    .bind(kind)
    .bind(keys)
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
