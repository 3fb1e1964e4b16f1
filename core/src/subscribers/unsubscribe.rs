//! Taking a person off a Page's campaigns: one statement behind every channel (link, keyword,
//! quick reply, objection, admin), with what each channel also owes — the confirmation message,
//! the count.

use anyhow::Context as _;
use moonengage_ops::metrics;
use moonengage_queue::jobs;
use sqlx::PgConnection;

use crate::jobs::{Cause, NotifyJob, NotifyKind};

/// What unsubscribing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The person is unsubscribed now (or was already).
    Done,
    /// No such person on that Page: erased, so there is nothing left to unsubscribe.
    Gone,
}

/// Who took a person off a Page's campaigns, which decides what brings them back
/// (`subscribers.unsubscribed_by`: `stop` or `objection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum OptOut {
    /// The person said stop (keyword, quick reply, link) or an admin did: only a start keyword
    /// subscribes them again.
    Stop,
    /// An objection (GDPR Art. 21): their next message is a new opt-in.
    Objection,
}

/// How a person came to be unsubscribed: it decides who took them off ([`OptOut`]), how it is
/// counted (`moonengage_unsubscribes_total{channel}`) and whether a message confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The link of a message (`/u/{token}`): the page they confirm on is the confirmation.
    Link,
    /// A stop keyword in the stored webhook event with this id: a message confirms it.
    Keyword(i64),
    /// The unsubscribe quick reply of a campaign message (stored webhook event with this id):
    /// a message confirms it.
    QuickReply(i64),
    /// An objection request (GDPR Art. 21, `dsr_requests.id`): a message confirms it; the
    /// request is counted as such, not as an unsubscribe.
    Objection(i64),
    /// An admin (the CLI's seeding of demo people): nobody is told.
    Admin,
}

impl Via {
    fn opt_out(self) -> OptOut {
        match self {
            Via::Objection(_) => OptOut::Objection,
            Via::Link | Via::Keyword(_) | Via::QuickReply(_) | Via::Admin => OptOut::Stop,
        }
    }

    /// Counts one unsubscribe in `moonengage_unsubscribes_total` by channel (an objection is
    /// counted as a request instead).
    fn count(self) {
        let channel = match self {
            Via::Link => "link",
            Via::Keyword(_) => "keyword",
            Via::QuickReply(_) => "quick_reply",
            Via::Admin => "admin",
            Via::Objection(_) => return,
        };
        metrics::unsubscribed(channel);
    }

    /// What a confirmation message answers, when one is owed.
    fn confirms(self) -> Option<Cause> {
        match self {
            Via::Keyword(event) | Via::QuickReply(event) => Some(Cause::Event(event)),
            Via::Objection(request) => Some(Cause::Request(request)),
            Via::Link | Via::Admin => None,
        }
    }
}

/// Unsubscribes a person, the one way every channel does it; idempotent. The Page must match,
/// so a token minted for one Page cannot act on another. Their queued sends are skipped by the
/// send job, which reads the status before sending. A stop outlasts a later objection: only a
/// start keyword undoes it. When `via` owes a confirmation and the person is inside their
/// window, the confirmation message is queued (with `max_attempts`, `queue.max_attempts`) in
/// the same transaction; the unsubscribe is counted by channel. Run it in the caller's
/// transaction so all of it commits, or none.
pub async fn unsubscribe(
    conn: &mut PgConnection,
    subscriber_id: i64,
    page_id: i64,
    via: Via,
    max_attempts: i32,
) -> anyhow::Result<Unsubscribed> {
    let found = set_unsubscribed(&mut *conn, &[subscriber_id], page_id, via.opt_out()).await?;
    let Some(&(_, in_window)) = found.first() else {
        return Ok(Unsubscribed::Gone);
    };
    if let Some(cause) = via.confirms()
        && in_window
    {
        let confirmation = NotifyJob {
            subscriber_id,
            kind: NotifyKind::Unsubscribed,
            cause,
        };
        super::confirmation::owe(&mut *conn, subscriber_id).await?;
        jobs::enqueue(&mut *conn, &confirmation, max_attempts).await?;
    }
    via.count();
    tracing::debug!(subscriber_id, ?via, "unsubscribed");
    Ok(Unsubscribed::Done)
}

/// Unsubscribes people of a Page at an admin's request (the CLI's demo seed), in one statement
/// with the same effect as [`unsubscribe`] through [`Via::Admin`]; returns how many were found.
pub async fn unsubscribe_by_admin(
    conn: &mut PgConnection,
    page_id: i64,
    subscriber_ids: &[i64],
) -> anyhow::Result<usize> {
    let found = set_unsubscribed(conn, subscriber_ids, page_id, Via::Admin.opt_out()).await?;
    found.iter().for_each(|_| Via::Admin.count());
    Ok(found.len())
}

/// The statement behind every unsubscribe: returns each person found, and whether they are
/// inside their window.
async fn set_unsubscribed(
    conn: &mut PgConnection,
    subscriber_ids: &[i64],
    page_id: i64,
    by: OptOut,
) -> anyhow::Result<Vec<(i64, bool)>> {
    sqlx::query_as(
        "UPDATE subscribers
         SET status = 'unsubscribed', unsubscribed_at = coalesce(unsubscribed_at, now()),
             unsubscribed_by = CASE WHEN status = 'unsubscribed' AND unsubscribed_by = 'stop'
                                    THEN 'stop' ELSE $3 END
         WHERE id = ANY($1) AND page_id = $2
         RETURNING id, in_messaging_window(last_interaction_at)",
    )
    .bind(subscriber_ids)
    .bind(page_id)
    .bind(by)
    .fetch_all(conn)
    .await
    .context("unsubscribing")
}
