//! Telling the people a breach affects (GDPR Art. 34): deciding who gets a notice, queuing it,
//! and each person's notice claimed once and sent when they can be reached.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_queue::{Job, jobs};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::*;

/// Who an incident's notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affected {
    /// Every subscriber of one Page (`pages.id`).
    Page(i64),
    /// Everybody we hold data about.
    Everyone,
}

/// What deciding a notice did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NoticeDecided {
    /// People owed the notice (everyone reachable among those affected).
    pub owed: i64,
    /// Notices queued now, for people inside their window; the others are told with the reply
    /// to their next message.
    pub queued: i64,
}

/// One incident notice to one person. Ids only; the incident row holds the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNoticeJob {
    /// `incidents.id`.
    pub incident_id: i64,
    /// The person.
    pub subscriber_id: i64,
    /// The event whose reply carries the notice; `None` when queued at the decision.
    pub reply_to: Option<i64>,
}

impl Job for IncidentNoticeJob {
    const KIND: &'static str = "incident";

    fn key(&self) -> String {
        match self.reply_to {
            None => format!("decided:{}:{}", self.incident_id, self.subscriber_id),
            Some(event) => format!("reply:{}:{}:{event}", self.incident_id, self.subscriber_id),
        }
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}

/// Decides to tell the people affected: records who they are (one set-based statement) and,
/// in the same transaction, queues the notice of everyone inside their window. Once per
/// incident: a second decision is a conflict. People Facebook reports unreachable are left out.
pub async fn decide_notice(
    pool: &PgPool,
    id: i64,
    affected: Affected,
    max_attempts: i32,
) -> Result<NoticeDecided, IncidentError> {
    let mut tx = pool.begin().await.context("starting an incident notice")?;
    let page_id = match affected {
        Affected::Page(page_id) => Some(page_id),
        Affected::Everyone => None,
    };
    let decided: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT notice_decided_at FROM incidents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .context("reading an incident")?;
    match decided {
        None => return Err(IncidentError::NotFound("incident")),
        Some(Some(_)) => {
            return Err(IncidentError::Conflict(format!(
                "the notice of incident {id} was decided already"
            )));
        }
        Some(None) => {}
    }
    if let Some(page_id) = page_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pages WHERE id = $1)")
            .bind(page_id)
            .fetch_one(&mut *tx)
            .await
            .context("finding the Page")?;
        if !exists {
            // The path names the incident; a body naming no Page is a bad body, not a
            // missing incident.
            return Err(IncidentError::Invalid {
                field: "page_id",
                reason: "no Page has this id".into(),
            });
        }
    }
    sqlx::query(
        "UPDATE incidents SET notice_decided_at = now(), notice_page_id = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(page_id)
    .execute(&mut *tx)
    .await
    .context("recording an incident notice")?;
    let owed: Vec<(i64, bool)> = sqlx::query_as(
        "WITH owed AS (
             INSERT INTO incident_notices (incident_id, subscriber_id)
             SELECT $1, s.id FROM subscribers s
             WHERE s.status <> 'unreachable' AND ($2::bigint IS NULL OR s.page_id = $2)
             RETURNING subscriber_id
         )
         SELECT s.id, in_messaging_window(s.last_interaction_at)
         FROM owed o JOIN subscribers s ON s.id = o.subscriber_id",
    )
    .bind(id)
    .bind(page_id)
    .fetch_all(&mut *tx)
    .await
    .context("recording who is owed an incident notice")?;
    let notices: Vec<IncidentNoticeJob> = owed
        .iter()
        .filter(|(_, in_window)| *in_window)
        .map(|&(subscriber_id, _)| IncidentNoticeJob {
            incident_id: id,
            subscriber_id,
            reply_to: None,
        })
        .collect();
    let queued = jobs::enqueue_many(&mut tx, &notices, Duration::ZERO, max_attempts)
        .await
        .context("queuing incident notices")?;
    tx.commit().await.context("committing an incident notice")?;
    Ok(NoticeDecided {
        owed: i64::try_from(owed.len()).unwrap_or(i64::MAX),
        queued: i64::try_from(queued).unwrap_or(i64::MAX),
    })
}

/// Queues every incident notice a person who just wrote to their Page is still owed: the reply
/// path for everyone who was outside their window when the notice was decided. Keyed by the
/// event; [`claim`] still lets only one job tell them.
pub async fn queue_for_reply(
    conn: &mut PgConnection,
    subscriber_id: i64,
    event_id: i64,
    max_attempts: i32,
) -> anyhow::Result<()> {
    let owed: Vec<i64> = sqlx::query_scalar(
        "SELECT incident_id FROM incident_notices
         WHERE subscriber_id = $1 AND told_at IS NULL",
    )
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .context("finding incident notices a person is owed")?;
    let notices: Vec<IncidentNoticeJob> = owed
        .into_iter()
        .map(|incident_id| IncidentNoticeJob {
            incident_id,
            subscriber_id,
            reply_to: Some(event_id),
        })
        .collect();
    jobs::enqueue_many(conn, &notices, Duration::ZERO, max_attempts)
        .await
        .context("queuing incident notices with a reply")?;
    Ok(())
}

/// What a claimed notice says.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
    /// What may have been exposed (as stored).
    pub categories: Vec<String>,
    /// What happened.
    pub description: String,
}

/// Claims the right to tell a person of an incident: marks them told, atomically, only when
/// they are owed it, reachable and inside their window. `None`: nothing to send now (told
/// already, or they will be told with their next reply). A send that dies half-way keeps the
/// claim: they may have seen it.
pub async fn claim(
    pool: &PgPool,
    incident_id: i64,
    subscriber_id: i64,
) -> anyhow::Result<Option<Claimed>> {
    sqlx::query_as(
        "WITH claimed AS (
             UPDATE incident_notices n SET told_at = now()
             FROM subscribers s
             WHERE n.incident_id = $1 AND n.subscriber_id = $2 AND n.told_at IS NULL
               AND s.id = n.subscriber_id AND s.status <> 'unreachable'
               AND in_messaging_window(s.last_interaction_at)
             RETURNING n.incident_id
         )
         SELECT i.detected_at, i.categories, i.description
         FROM claimed, incidents i WHERE i.id = claimed.incident_id",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .fetch_optional(pool)
    .await
    .context("claiming an incident notice")
}

/// Gives a claim back after a send that certainly did not reach the person.
pub async fn release(pool: &PgPool, incident_id: i64, subscriber_id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE incident_notices SET told_at = NULL WHERE incident_id = $1 AND subscriber_id = $2",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .execute(pool)
    .await
    .context("releasing an incident notice")?;
    Ok(())
}

/// The text of a notice: what happened, what data, and how to act.
pub fn notice_text(
    page_name: &str,
    claimed: &Claimed,
    export_keyword: &str,
    erase_keyword: &str,
) -> String {
    let what: Vec<&str> = DataCategory::ALL
        .into_iter()
        .filter(|c| claimed.categories.iter().any(|stored| stored == c.as_str()))
        .map(DataCategory::describe)
        .collect();
    format!(
        "Important notice from {page_name}: a security incident detected on {} may have \
         exposed data about you ({}). {} Reply \"{export_keyword}\" for a copy of the data we \
         hold, \"{erase_keyword}\" to have it deleted, or STOP to unsubscribe.",
        claimed.detected_at.format("%-d %B %Y"),
        what.join(", "),
        claimed.description
    )
}
