//! Queuing jobs: from our own SQL, in the caller's transaction, so a job commits or rolls back
//! with the change it belongs to; one row per job, or many in one statement.

use std::time::Duration;

use anyhow::Context as _;

use crate::job::Job;
use crate::wake;

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
    let row = [NewRow::of(job)?];
    let added = insert::<J>(executor, &row, delay, max_attempts).await?;
    Ok(added == 1)
}

/// Queues many jobs of one kind, set-based (a statement per run of about 12 KiB of rows, see
/// `STATEMENT_BYTES`); returns how many were new. Pass a transaction to queue all or none.
pub async fn enqueue_many<J: Job>(
    conn: &mut sqlx::PgConnection,
    jobs: &[J],
    delay: Duration,
    max_attempts: i32,
) -> anyhow::Result<u64> {
    let rows = jobs
        .iter()
        .map(NewRow::of)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut added = 0;
    for run in crate::runs(&rows, NewRow::bytes) {
        added += insert::<J>(&mut *conn, run, delay, max_attempts).await?;
    }
    Ok(added)
}

/// A job encoded for insertion.
struct NewRow {
    key: String,
    payload: serde_json::Value,
    payload_bytes: usize,
    subscriber_id: Option<i64>,
}

impl NewRow {
    fn of<J: Job>(job: &J) -> anyhow::Result<NewRow> {
        let payload = serde_json::to_value(job).context("encoding a job payload")?;
        Ok(NewRow {
            key: job.key(),
            payload_bytes: payload.to_string().len(),
            payload,
            subscriber_id: job.subscriber_id(),
        })
    }

    /// Parameter bytes of the row: lengths, key, payload (with jsonb's version byte), id.
    fn bytes(&self) -> usize {
        4 + self.key.len() + 5 + self.payload_bytes + 12
    }
}

/// One statement: inserts `rows` of kind `J`, and wakes the kind's claimers.
async fn insert<'e, J: Job>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[NewRow],
    delay: Duration,
    max_attempts: i32,
) -> anyhow::Result<u64> {
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| &r.payload).collect();
    let subscribers: Vec<Option<i64>> = rows.iter().map(|r| r.subscriber_id).collect();
    let added: i64 = sqlx::query_scalar(
        "WITH added AS (
             INSERT INTO jobs (kind, key, payload, subscriber_id, run_at, max_attempts)
             SELECT $1, k, p, s, now() + make_interval(secs => $5), $6
             FROM unnest($2::text[], $3::jsonb[], $4::bigint[]) AS j(k, p, s)
             ON CONFLICT (kind, key) DO NOTHING
             RETURNING 1
         ),
         woken AS (SELECT pg_notify($7, $1))
         SELECT (SELECT count(*) FROM added) FROM woken",
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
