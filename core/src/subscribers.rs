//! People who opted in to a Page. Written in sets (one statement per batch), with the PSID and
//! the optional first name sealed and the PSID's blind index kept for look-ups.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::crypto::{Context, Keyring};

/// One person to add, with the evidence of their opt-in.
#[derive(Debug, Clone)]
pub struct NewSubscriber {
    /// Page-scoped id of the person.
    pub psid: String,
    /// First name, when the deployment keeps it.
    pub first_name: Option<String>,
    /// When they opted in (their first message to the Page).
    pub opted_in_at: DateTime<Utc>,
    /// How they opted in: `messenger`, `import`, `demo`.
    pub consent_source: String,
    /// Their last message to the Page, which opens the 24-hour window.
    pub last_interaction_at: DateTime<Utc>,
}

/// Adds subscribers to a Page in one statement; people already known are left as they are.
/// Returns how many were new.
pub async fn insert_batch(
    pool: &PgPool,
    keyring: &Keyring,
    page_id: i64,
    fb_page_id: &str,
    people: &[NewSubscriber],
) -> anyhow::Result<u64> {
    let mut indexes = Vec::with_capacity(people.len());
    let mut psids = Vec::with_capacity(people.len());
    let mut names = Vec::with_capacity(people.len());
    let mut opted = Vec::with_capacity(people.len());
    let mut sources = Vec::with_capacity(people.len());
    let mut last = Vec::with_capacity(people.len());
    for person in people {
        indexes.push(keyring.blind_index(fb_page_id, &person.psid));
        psids.push(keyring.seal_str(Context::SubscriberPsid, &person.psid));
        names.push(
            person
                .first_name
                .as_deref()
                .map(|name| keyring.seal_str(Context::SubscriberFirstName, name)),
        );
        opted.push(person.opted_in_at);
        sources.push(person.consent_source.as_str());
        last.push(person.last_interaction_at);
    }
    let inserted = sqlx::query(
        "INSERT INTO subscribers
           (page_id, psid_index, psid, first_name, opted_in_at, consent_source, last_interaction_at)
         SELECT $1, * FROM UNNEST($2::bytea[], $3::bytea[], $4::bytea[], $5::timestamptz[],
                                  $6::text[], $7::timestamptz[])
         ON CONFLICT (page_id, psid_index) DO NOTHING",
    )
    .bind(page_id)
    .bind(indexes)
    .bind(psids)
    .bind(names)
    .bind(opted)
    .bind(sources)
    .bind(last)
    .execute(pool)
    .await
    .context("inserting subscribers")?;
    Ok(inserted.rows_affected())
}

/// What unsubscribing through a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The person is unsubscribed now (or was already).
    Done,
    /// No such person on that Page: erased, so there is nothing left to unsubscribe.
    Gone,
}

/// Unsubscribes a person at once; idempotent. The Page must match, so a token minted for one
/// Page cannot act on another. Their queued sends are skipped by the send job, which reads the
/// status before sending.
pub async fn unsubscribe(
    executor: impl sqlx::PgExecutor<'_>,
    subscriber_id: i64,
    page_id: i64,
) -> anyhow::Result<Unsubscribed> {
    let found: Option<i64> = sqlx::query_scalar(
        "UPDATE subscribers
         SET status = 'unsubscribed', unsubscribed_at = coalesce(unsubscribed_at, now())
         WHERE id = $1 AND page_id = $2 RETURNING id",
    )
    .bind(subscriber_id)
    .bind(page_id)
    .fetch_optional(executor)
    .await
    .context("unsubscribing")?;
    Ok(match found {
        Some(_) => Unsubscribed::Done,
        None => Unsubscribed::Gone,
    })
}

/// Marks a person Facebook says can no longer be reached (blocked the Page, deleted their
/// account): later campaigns skip them with the reason `unreachable`.
pub async fn mark_unreachable(
    executor: impl sqlx::PgExecutor<'_>,
    subscriber_id: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE subscribers SET status = 'unreachable' WHERE id = $1")
        .bind(subscriber_id)
        .execute(executor)
        .await
        .context("marking a person unreachable")?;
    Ok(())
}

/// A person's status, or `None` when they were erased (or the Page does not match).
pub async fn status(
    pool: &PgPool,
    subscriber_id: i64,
    page_id: i64,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1 AND page_id = $2")
        .bind(subscriber_id)
        .bind(page_id)
        .fetch_optional(pool)
        .await
        .context("reading a subscriber's status")
}

/// A Page's audience by status, and how many are inside their 24-hour window now.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, sqlx::FromRow)]
pub struct Counts {
    /// Opted in and reachable.
    pub active: i64,
    /// Asked to receive nothing more.
    pub unsubscribed: i64,
    /// Facebook says they cannot be reached from this Page.
    pub unreachable: i64,
    /// Active and inside the window: who a campaign sent now would reach.
    pub in_window: i64,
}

/// Counts a Page's subscribers by status.
pub async fn counts(pool: &PgPool, page_id: i64) -> anyhow::Result<Counts> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'active') AS active,
                count(*) FILTER (WHERE status = 'unsubscribed') AS unsubscribed,
                count(*) FILTER (WHERE status = 'unreachable') AS unreachable,
                count(*) FILTER (WHERE status = 'active'
                                   AND last_interaction_at > now() - interval '24 hours')
                  AS in_window
         FROM subscribers WHERE page_id = $1",
    )
    .bind(page_id)
    .fetch_one(pool)
    .await
    .context("counting subscribers")
}
