//! The Postgres queue (apalis-postgres): stable queue names, job payloads that carry ids only,
//! the storage every worker polls, and set-based enqueueing for our own SQL.

use std::time::Duration;

use anyhow::Context as _;
use apalis_core::backend::ext::BackendExt;
use apalis_core::backend::ext::poll_strategy::{PollWith, Strategy};
use apalis_postgres::{Config, PostgresStorage};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::settings::QueueSettings;

/// Queue of per-recipient campaign sends. Names are fixed here, never the Rust type name, so a
/// refactor cannot orphan queued rows.
pub const SEND_QUEUE: &str = "send";

/// Queue of received webhook events, each processed once by a worker.
pub const WEBHOOK_QUEUE: &str = "webhook";

/// Queue of data-subject requests (export, erasure, objection).
pub const DSR_QUEUE: &str = "dsr";

/// Queue of one-line service messages to a person (e.g. the confirmation of an unsubscribe).
pub const NOTIFY_QUEUE: &str = "notify";

/// Queue of e-mails to admins (see `notify::admin`), retried until the SMTP server takes them.
pub const EMAIL_QUEUE: &str = "email";

/// Queue of privacy-policy notices to people (see `policy`).
pub const POLICY_QUEUE: &str = "policy";

/// One campaign message to one person. Ids only: job rows are not encrypted and outlive their
/// work, so a PSID, a name or a text never goes in here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendJob {
    /// The campaign being sent.
    pub campaign_id: i64,
    /// The recipient, by internal id.
    pub subscriber_id: i64,
}

impl SendJob {
    /// The unique key that makes enqueueing a campaign's recipient idempotent.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.campaign_id, self.subscriber_id)
    }
}

/// One received webhook event to process; the event's row holds the rest (sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    /// `webhook_events.id`.
    pub event_id: i64,
}

/// One data-subject request to carry out; the request's row holds the rest (sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsrJob {
    /// `dsr_requests.id`.
    pub request_id: i64,
}

/// Which service message a notify job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// Confirms that the person is unsubscribed and will get no more campaign messages.
    Unsubscribed,
}

/// One service message to one person, by internal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    /// The recipient.
    pub subscriber_id: i64,
    /// What to tell them.
    pub kind: NotifyKind,
}

/// Queues one job from our own SQL, so it commits or rolls back with the rows it belongs to
/// (pass a transaction). The `(queue, idempotency_key)` pair is unique: queuing the same work
/// twice adds nothing, and the answer says whether this call added the job.
pub async fn enqueue<'e, J: Serialize>(
    executor: impl sqlx::PgExecutor<'e>,
    queue: &str,
    job: &J,
    idempotency_key: &str,
    max_attempts: i32,
) -> anyhow::Result<bool> {
    let payload = serde_json::to_vec(job).context("encoding a job payload")?;
    let added = sqlx::query(
        "INSERT INTO apalis.jobs
           (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
         VALUES (apalis.generate_ulid(), $1, $2, 'Pending', 0, $3, now(), 0, $4)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
    )
    .bind(queue)
    .bind(payload)
    .bind(max_attempts)
    .bind(idempotency_key)
    .execute(executor)
    .await
    .with_context(|| format!("queuing a {queue} job"))?;
    Ok(added.rows_affected() == 1)
}

/// The storage type a worker polls: apalis-postgres with LISTEN/NOTIFY plus an interval.
pub type Storage<T> = PollWith<
    PollWith<
        PostgresStorage<T>,
        apalis_core::backend::ext::poll_strategy::StreamStrategy<apalis_postgres::Pubsub>,
    >,
    Strategy,
>;

/// Builds the storage for `queue` with the pitfalls of apalis-postgres 1.0 designed around: a
/// large fetch batch, NOTIFY so a new job is seen at once, and an interval poll so a job whose
/// run time arrives (a retry) is not left waiting for the 30 s heartbeat.
pub fn storage<T>(pool: &PgPool, settings: &QueueSettings, queue: &str) -> Storage<T> {
    let config = Config::default()
        .queue(queue)
        .batch_size(settings.batch_size)
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats);
    PostgresStorage::new(pool)
        .with_config(config)
        .with_pubsub()
        .poll_with_strategy(
            Strategy::new().interval(Duration::from_millis(settings.poll_interval_ms)),
        )
}

/// Puts a running job back in the queue to run after `delay`, and takes it out of the running
/// worker's hands so the worker's own completion write no longer matches it (apalis-postgres
/// 1.0 completes only rows still locked by the worker). This is how a send backs off by moving
/// its run time, and how a deferral (paused campaign, rate-limited Page) spends no attempt.
pub async fn reschedule(
    pool: &PgPool,
    task_id: &str,
    delay: Duration,
    spend_attempt: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE apalis.jobs
         SET status = 'Pending', lock_by = NULL, lock_at = NULL,
             run_at = now() + make_interval(secs => $2),
             attempts = attempts + $3::int
         WHERE id = $1",
    )
    .bind(task_id)
    .bind(delay.as_secs_f64())
    .bind(i32::from(spend_attempt))
    .execute(pool)
    .await?;
    Ok(())
}

/// Exponential backoff with jitter: a random delay between half and all of `base * 2^attempt`
/// (capped), so retries of jobs that failed together spread out instead of arriving together.
pub fn backoff(settings: &QueueSettings, attempt: u32) -> Duration {
    let ceiling = settings
        .retry_base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(settings.retry_max_ms)
        .max(1);
    let half = ceiling / 2;
    Duration::from_millis(half + rand::random::<u64>() % (ceiling - half + 1))
}

/// Parks a running send job with its paused campaign (see `campaigns::pause`), but only while
/// the campaign is still paused: a resume that raced with this job must not leave it parked.
/// Returns false when the campaign was no longer paused.
pub async fn park_while_paused(
    pool: &PgPool,
    task_id: &str,
    campaign_id: i64,
) -> sqlx::Result<bool> {
    let parked = sqlx::query(
        "UPDATE apalis.jobs
         SET status = 'Pending', lock_by = NULL, lock_at = NULL,
             run_at = now() + interval '100 years'
         WHERE id = $1
           AND EXISTS (SELECT 1 FROM campaigns WHERE id = $2 AND state = 'paused')",
    )
    .bind(task_id)
    .bind(campaign_id)
    .execute(pool)
    .await?;
    Ok(parked.rows_affected() == 1)
}
