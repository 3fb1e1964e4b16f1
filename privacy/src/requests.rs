//! The life of a data-subject request row: claimed by its job, completed with an outcome that
//! holds no personal data (and the sealed subject dropped), read back by confirmation code.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::crypto::Keyring;
use crate::dsr::{Channel, DsrType, Status, Subject};
use crate::subject::SealedSubject;
use moonengage_ops::alerts::{self, AdminEvent};

/// An open request a job is carrying out.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    /// What is asked for.
    #[sqlx(rename = "type")]
    pub kind: DsrType,
    /// How it reached us.
    pub channel: Channel,
    /// The code the person quotes.
    pub confirmation_code: String,
    /// When it was filed.
    pub received_at: DateTime<Utc>,
    /// Who it is about, sealed; `None` only if a previous run dropped it without completing.
    pub subject_ref: Option<Vec<u8>>,
    /// Whether the request was filed in the conversation inside the last 24 hours: its
    /// message opened the person's window even if they have no subscriber row to record it
    /// (`in_messaging_window(received_at)`).
    pub opened_window: bool,
}

/// Marks a request `processing` and returns it; `None` when it is completed or refused already,
/// so a job that runs again does nothing.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    request_id: i64,
) -> anyhow::Result<Option<Claimed>> {
    sqlx::query_as(
        "UPDATE dsr_requests SET status = 'processing'
         WHERE id = $1 AND status IN ('received', 'processing')
         RETURNING type, channel, confirmation_code, received_at, subject_ref,
                   channel = 'messenger' AND in_messaging_window(received_at) AS opened_window",
    )
    .bind(request_id)
    .fetch_optional(executor)
    .await
    .context("claiming a data-subject request")
}

/// Claims the one message the request sends its person, in its own commit before it is sent:
/// true when this run may send it, false when an earlier run did (or may have).
pub async fn claim_notice(executor: impl PgExecutor<'_>, request_id: i64) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "UPDATE dsr_requests SET notice_claimed_at = now()
         WHERE id = $1 AND notice_claimed_at IS NULL",
    )
    .bind(request_id)
    .execute(executor)
    .await
    .context("claiming a request's message")?;
    Ok(claimed.rows_affected() == 1)
}

/// Gives the claim of [`claim_notice`] back after a send that certainly did not reach the
/// person, so a later run may try again.
pub async fn release_notice(executor: impl PgExecutor<'_>, request_id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE dsr_requests SET notice_claimed_at = NULL WHERE id = $1")
        .bind(request_id)
        .execute(executor)
        .await
        .context("releasing a request's message")?;
    Ok(())
}

/// Completes a request: the audit row keeps type, channel, times and the outcome; who it was
/// about is dropped, and admins are notified (with the change). Returns false when it was not
/// open (completed by an earlier run).
pub async fn complete(
    conn: &mut PgConnection,
    request_id: i64,
    outcome: &str,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE dsr_requests
         SET status = 'completed', completed_at = now(), outcome = $2, subject_ref = NULL
         WHERE id = $1 AND status IN ('received', 'processing')",
    )
    .bind(request_id)
    .bind(outcome)
    .execute(&mut *conn)
    .await
    .context("completing a data-subject request")?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    alerts::admin(conn, AdminEvent::DsrCompleted { request_id }).await?;
    Ok(true)
}

/// Reads a request by the code its person quotes (the status page).
pub async fn by_code(executor: impl PgExecutor<'_>, code: &str) -> anyhow::Result<Option<Status>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} WHERE confirmation_code = $1",
        crate::dsr::STATUS_SELECT
    )))
    .bind(code)
    .fetch_optional(executor)
    .await
    .context("reading a data-subject request by code")
}

/// Every open request about `person` (matched by PSID or subscriber id on the same Page), by
/// opening each open request's subject: open requests are few, and their subjects are sealed.
pub async fn open_about(
    conn: &mut PgConnection,
    keyring: &Keyring,
    person: &Subject,
) -> anyhow::Result<Vec<Status>> {
    let open: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, subject_ref FROM dsr_requests
         WHERE status IN ('received', 'processing') AND subject_ref IS NOT NULL
         ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await
    .context("listing open requests")?;
    let mut about = Vec::new();
    for (id, sealed) in open {
        let Ok(SealedSubject::Page(subject)) = SealedSubject::open(keyring, &sealed) else {
            continue;
        };
        if crate::subject::same_person(person, &subject) {
            let status: Status = sqlx::query_as(
                "SELECT id, type, channel, status, received_at, due_at, completed_at, outcome,
                        confirmation_code
                 FROM dsr_requests WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .context("reading an open request")?;
            about.push(status);
        }
    }
    Ok(about)
}
