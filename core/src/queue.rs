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

/// Queue of key-rotation steps (see `key_rotation`): re-sealing personal fields under a new
/// data key, one step after another.
pub const ROTATE_QUEUE: &str = "rotate";

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

/// One step of a key rotation: re-seal, in batches, what is still sealed under an older data key,
/// resuming at a position; the step queues the next one until nothing is left. Ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateJob {
    /// The data key everything is re-sealed under.
    pub key_id: i32,
    /// Steps before this one: with the key id, the idempotency key, so each step is queued once.
    pub step: u32,
    /// Index into `key_rotation::SEALED_COLUMNS` where this step resumes.
    pub column: usize,
    /// The last row id already handled in that column.
    pub after_id: i64,
}

impl RotateJob {
    /// The first step of a rotation to `key_id`.
    pub fn start(key_id: i32) -> RotateJob {
        RotateJob {
            key_id,
            step: 0,
            column: 0,
            after_id: 0,
        }
    }

    /// The unique key of this step in its queue.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.key_id, self.step)
    }
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

/// The storage type a worker polls: apalis-postgres driven by a poll strategy.
pub type Storage<T> = PollWith<PostgresStorage<T>, Strategy>;

/// Queues whose jobs someone is waiting for — a campaign's sends, a person's STOP — and which a
/// worker therefore LISTENs to. Each listener holds a pool connection for the life of the
/// worker, so the quieter queues (notices, e-mail, requests, rotation) are polled instead.
const LISTENED: [&str; 2] = [SEND_QUEUE, WEBHOOK_QUEUE];

/// Builds the storage for `queue` with the pitfalls of apalis-postgres 1.0 designed around: a
/// large fetch batch, NOTIFY (on the queues that need it) so a new job is seen at once, and an
/// interval poll so a job whose run time arrives (a retry) is not left waiting for the 30 s
/// heartbeat.
pub fn storage<T>(pool: &PgPool, settings: &QueueSettings, queue: &str) -> Storage<T> {
    let config = Config::default()
        .queue(queue)
        .batch_size(settings.batch_size)
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats);
    let mut strategy = Strategy::new();
    if LISTENED.contains(&queue) {
        strategy = strategy.stream(apalis_postgres::Pubsub::new(pool.clone(), queue.to_owned()));
    }
    PostgresStorage::new(pool)
        .with_config(config)
        .poll_with_strategy(strategy.interval(Duration::from_millis(settings.poll_interval_ms)))
}

/// Puts a running job back in the queue to run after `delay` — how a send backs off by moving
/// its run time, and how a deferral (rate-limited Page, saturated limiter) spends no attempt.
///
/// The job continues as a new row carrying the same payload and idempotency key, and the
/// running row gives its key up and completes as usual. Moving the running row itself is
/// unsafe with apalis-postgres 1.0: its lock and completion writes are buffered and may land
/// after ours, marking the moved row running or done — a job lost without an outcome.
pub async fn reschedule(
    pool: &PgPool,
    task_id: &str,
    delay: Duration,
    spend_attempt: bool,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    continue_later(&mut tx, task_id, delay, spend_attempt).await?;
    tx.commit().await
}

/// Parks a running send job with its paused campaign (see `campaigns::pause`), but only while
/// the campaign is still paused, so a resume that raced with this job cannot leave it parked.
/// Returns false when the campaign was no longer paused.
pub async fn park_while_paused(
    pool: &PgPool,
    task_id: &str,
    campaign_id: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    // FOR SHARE holds off a concurrent resume until the parked job exists to be resumed.
    let paused: Option<i64> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1 AND state = 'paused' FOR SHARE")
            .bind(campaign_id)
            .fetch_optional(&mut *tx)
            .await?;
    if paused.is_none() {
        return Ok(false);
    }
    continue_later(&mut tx, task_id, PARKED, false).await?;
    tx.commit().await?;
    Ok(true)
}

/// How far ahead a parked job is put: no worker fetches it until a resume makes it due.
const PARKED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Re-queues the job as a new row after `delay`; see [`reschedule`] for why a new row.
async fn continue_later(
    tx: &mut sqlx::PgConnection,
    task_id: &str,
    delay: Duration,
    spend_attempt: bool,
) -> sqlx::Result<()> {
    let key: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE apalis.jobs j SET idempotency_key = NULL
         FROM (SELECT idempotency_key FROM apalis.jobs WHERE id = $1 FOR UPDATE) old
         WHERE j.id = $1
         RETURNING old.idempotency_key",
    )
    .bind(task_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(key) = key else { return Ok(()) };
    sqlx::query(
        "INSERT INTO apalis.jobs
           (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata,
            idempotency_key)
         SELECT apalis.generate_ulid(), job_type, job, 'Pending', attempts + $2, max_attempts,
                now() + make_interval(secs => $3), priority, metadata, $4
         FROM apalis.jobs WHERE id = $1",
    )
    .bind(task_id)
    .bind(i32::from(spend_attempt))
    .bind(delay.as_secs_f64())
    .bind(key)
    .execute(&mut *tx)
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
