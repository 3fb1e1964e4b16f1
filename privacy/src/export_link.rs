//! An export's link that could not be sent when the export was ready (the person was outside
//! their 24-hour window, or Facebook refused the message) waits (`exports.link_waiting`) and
//! goes with the reply to the person's next message, as policy notices do; an admin can
//! re-issue it, which gives the export a new link and sends it the same way.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_queue::{Job, jobs};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::dsr::{REACHED, Reach};
use crate::exports::{self, Created};

/// Why a link is sent now: with the request, the job's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "id")]
pub enum LinkCause {
    /// The person wrote (`webhook_events.id`): their window is open.
    Reply(i64),
    /// An admin re-issued the link (milliseconds since the epoch, so each re-issue is queued).
    Reissue(i64),
}

/// Sends the link of one waiting export to the person it is about. Ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportLinkJob {
    /// The export request (`exports.dsr_request_id`).
    pub request_id: i64,
    /// The person (erasing them removes the job).
    pub subscriber_id: i64,
    /// Why now.
    pub cause: LinkCause,
}

impl Job for ExportLinkJob {
    const KIND: &'static str = "export_link";

    fn key(&self) -> String {
        match self.cause {
            LinkCause::Reply(event) => format!("reply:{}:{event}", self.request_id),
            LinkCause::Reissue(at_ms) => format!("reissue:{}:{at_ms}", self.request_id),
        }
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}

/// Why a link cannot be re-issued.
#[derive(Debug, thiserror::Error)]
pub enum ReissueError {
    /// The caller reaches no request with that id (another workspace's answers the same).
    #[error("no such request {0}")]
    NoSuchRequest(i64),
    /// No export of that request is held any more (downloaded, expired, erased, never made).
    #[error(
        "request {0} has no export held (it was downloaded, expired or erased, or the request \
         is not a completed export): file a new export request"
    )]
    NotHeld(i64),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// Marks the export of a request as waiting for the person's next message (or gives back a claim
/// whose send certainly failed).
pub async fn wait(executor: impl PgExecutor<'_>, request_id: i64) -> anyhow::Result<()> {
    set_waiting(executor, request_id, true).await
}

async fn set_waiting(
    executor: impl PgExecutor<'_>,
    request_id: i64,
    waiting: bool,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE exports SET link_waiting = $2 WHERE dsr_request_id = $1")
        .bind(request_id)
        .bind(waiting)
        .execute(executor)
        .await
        .context("recording an export link's delivery")?;
    Ok(())
}

/// Claims a waiting link for sending: the export gets a new link (the old one stops working,
/// the expiry stays) and no longer waits, atomically, so of the jobs racing for it one sends.
/// `None` when nothing waits (sent, downloaded, expired or erased). Like a delivery claim, a
/// claim whose send may have reached the person is kept; [`wait`] gives back one that certainly
/// did not.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    request_id: i64,
) -> anyhow::Result<Option<Created>> {
    let token = exports::fresh_token();
    let expires_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE exports SET token_hash = $2, link_waiting = false
         WHERE dsr_request_id = $1 AND link_waiting AND expires_at > now() RETURNING expires_at",
    )
    .bind(request_id)
    .bind(exports::token_hash(&token))
    .fetch_optional(executor)
    .await
    .context("claiming an export's waiting link")?;
    Ok(expires_at.map(|expires_at| Created { token, expires_at }))
}

/// Queues the waiting links of a person who just wrote to their Page (in the transaction that
/// records their message); returns how many.
pub async fn queue_for_reply(
    conn: &mut PgConnection,
    subscriber_id: i64,
    event_id: i64,
    max_attempts: i32,
) -> anyhow::Result<u64> {
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT dsr_request_id FROM exports
         WHERE subscriber_id = $1 AND link_waiting AND expires_at > now()",
    )
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .context("finding a person's waiting export links")?;
    let links: Vec<ExportLinkJob> = waiting
        .into_iter()
        .map(|request_id| ExportLinkJob {
            request_id,
            subscriber_id,
            cause: LinkCause::Reply(event_id),
        })
        .collect();
    jobs::enqueue_many(conn, &links, std::time::Duration::ZERO, max_attempts)
        .await
        .context("queuing waiting export links")
}

/// Re-issues the link of an export an admin names by its request (one the admin reaches): the
/// export gets a new link (until the same expiry), sent at once inside the person's window,
/// else with the reply to their next message.
pub async fn reissue(
    pool: &PgPool,
    reach: Reach,
    request_id: i64,
    max_attempts: i32,
) -> Result<(), ReissueError> {
    let mut tx = pool.begin().await.context("re-issuing an export link")?;
    let reached: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM dsr_requests WHERE {REACHED} FOR SHARE"
    )))
    .bind(request_id)
    .bind(reach.workspace_id)
    .bind(reach.platform)
    .fetch_optional(&mut *tx)
    .await
    .context("finding an export's request")?;
    if reached.is_none() {
        return Err(ReissueError::NoSuchRequest(request_id));
    }
    let subscriber_id: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE exports SET link_waiting = true
         WHERE dsr_request_id = $1 AND expires_at > now() RETURNING subscriber_id",
    )
    .bind(request_id)
    .fetch_optional(&mut *tx)
    .await
    .context("re-issuing an export link")?;
    let Some(Some(subscriber_id)) = subscriber_id else {
        return Err(ReissueError::NotHeld(request_id));
    };
    let link = ExportLinkJob {
        request_id,
        subscriber_id,
        cause: LinkCause::Reissue(chrono::Utc::now().timestamp_millis()),
    };
    jobs::enqueue(&mut *tx, &link, max_attempts)
        .await
        .context("queuing a re-issued export link")?;
    tx.commit().await.context("committing a re-issued link")?;
    Ok(())
}
