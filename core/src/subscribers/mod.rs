//! People who opted in to a Page. Written in sets (one statement per batch), with the PSID and
//! the optional first name sealed and the PSID's blind index kept for look-ups.
//!
//! **The 24-hour window.** Facebook lets a Page message a person only within 24 hours of that
//! person's last message to it (`last_interaction_at`). The rule has one home: the SQL function
//! `in_messaging_window(last_interaction_at)` (migration `20261206004000_messaging_window.sql`),
//! which every query asking "may we message them now?" calls — fan-out, the send claim, notices,
//! export links, requests and [`counts`]. It is inlined by the planner, so it costs nothing.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use moonengage_privacy::crypto::{Keyring, SealedField};

pub mod confirmation;
mod unsubscribe;

pub use unsubscribe::{OptOut, Unsubscribed, Via, unsubscribe, unsubscribe_by_admin};

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
        psids.push(keyring.seal_str(SealedField::SubscriberPsid, &person.psid));
        names.push(
            person
                .first_name
                .as_deref()
                .map(|name| keyring.seal_str(SealedField::SubscriberFirstName, name)),
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

/// Where a person stands with a Page (`subscribers.status`; the SQL of this module names the
/// same values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SubscriberStatus {
    /// Opted in and reachable: campaigns inside their window reach them.
    Active,
    /// Asked to receive nothing more (see [`OptOut`] for who and what brings them back).
    Unsubscribed,
    /// Facebook says they cannot be reached from this Page.
    Unreachable,
}

impl SubscriberStatus {
    /// The stored value, which is also the skip reason of a send to someone not active.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Active => "active",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Unreachable => "unreachable",
        }
    }
}

impl std::str::FromStr for SubscriberStatus {
    type Err = anyhow::Error;

    /// Reads a status the queue's claim returned as text.
    fn from_str(value: &str) -> anyhow::Result<SubscriberStatus> {
        let all = [
            SubscriberStatus::Active,
            SubscriberStatus::Unsubscribed,
            SubscriberStatus::Unreachable,
        ];
        crate::stored::parse(&all, SubscriberStatus::as_str, "subscriber status", value)
    }
}

/// A message that opts its sender in, and the evidence it is.
#[derive(Debug, Clone, Copy)]
pub struct Consent<'a> {
    /// The Page, by internal id.
    pub page_id: i64,
    /// The Page's Facebook id (the blind index is keyed by it).
    pub fb_page_id: &'a str,
    /// The sender's page-scoped id.
    pub psid: &'a str,
    /// When they wrote: the opt-in time and the start of their 24-hour window.
    pub at: DateTime<Utc>,
    /// `messenger` or `messenger_postback`.
    pub source: &'static str,
    /// Hash of the message id: the consent evidence that keeps nothing of what they wrote.
    pub mid_hash: &'a [u8],
    /// Whether the message was a start keyword, which also undoes a stop.
    pub start: bool,
}

/// What a message that opts in did to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A person new to the Page opted in.
    New(i64),
    /// Someone unreachable, who objected, or who stopped and wrote a start keyword is active
    /// again, with this message as their new consent evidence.
    Returned(i64),
    /// Someone known whose standing does not change (active, or stopped and writing anything
    /// but a start keyword); only their window opened.
    Known(i64),
}

impl Joined {
    /// The person, by internal id.
    pub fn subscriber_id(self) -> i64 {
        match self {
            Joined::New(id) | Joined::Returned(id) | Joined::Known(id) => id,
        }
    }
}

/// Where a known person stands, as far as coming back is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Active,
    Unsubscribed(OptOut),
    Unreachable,
}

impl Standing {
    fn of(status: SubscriberStatus, by: Option<OptOut>) -> Standing {
        match (status, by) {
            (SubscriberStatus::Unreachable, _) => Standing::Unreachable,
            (SubscriberStatus::Unsubscribed, by) => {
                Standing::Unsubscribed(by.unwrap_or(OptOut::Stop))
            }
            (SubscriberStatus::Active, _) => Standing::Active,
        }
    }

    /// Whether a message opting in (a start keyword when `start`) makes them active again.
    fn comes_back(self, start: bool) -> bool {
        match self {
            Standing::Active => false,
            Standing::Unreachable | Standing::Unsubscribed(OptOut::Objection) => true,
            Standing::Unsubscribed(OptOut::Stop) => start,
        }
    }
}

/// Opts the sender of a message in: a new person is added, someone coming back is made active
/// again with the message as new consent evidence, anyone else only has their window opened.
/// Run in the transaction that processes the message (the person's row is locked).
pub async fn opt_in(
    conn: &mut PgConnection,
    keyring: &Keyring,
    consent: &Consent<'_>,
) -> anyhow::Result<Joined> {
    let index = keyring.blind_index(consent.fb_page_id, consent.psid);
    let known: Option<(i64, SubscriberStatus, Option<OptOut>)> = sqlx::query_as(
        "SELECT id, status, unsubscribed_by FROM subscribers
         WHERE page_id = $1 AND psid_index = $2 FOR UPDATE",
    )
    .bind(consent.page_id)
    .bind(&index)
    .fetch_optional(&mut *conn)
    .await
    .context("finding the sender")?;
    let Some((id, status, by)) = known else {
        let (id, inserted): (i64, bool) = sqlx::query_as(
            "INSERT INTO subscribers
               (page_id, psid_index, psid, opted_in_at, consent_source, consent_mid_hash,
                last_interaction_at)
             VALUES ($1, $2, $3, $4, $5, $6, $4)
             ON CONFLICT (page_id, psid_index) DO UPDATE
               SET last_interaction_at =
                   greatest(subscribers.last_interaction_at, EXCLUDED.last_interaction_at)
             RETURNING id, xmax = 0",
        )
        .bind(consent.page_id)
        .bind(&index)
        .bind(keyring.seal_str(SealedField::SubscriberPsid, consent.psid))
        .bind(consent.at)
        .bind(consent.source)
        .bind(consent.mid_hash)
        .fetch_one(&mut *conn)
        .await
        .context("opting in a subscriber")?;
        return Ok(if inserted {
            Joined::New(id)
        } else {
            Joined::Known(id)
        });
    };
    if !Standing::of(status, by).comes_back(consent.start) {
        touch(&mut *conn, id, consent.at).await?;
        return Ok(Joined::Known(id));
    }
    sqlx::query(
        "UPDATE subscribers
         SET status = 'active', unsubscribed_at = NULL, unsubscribed_by = NULL,
             opted_in_at = $2, consent_source = $3, consent_mid_hash = $4,
             last_interaction_at = greatest(last_interaction_at, $2)
         WHERE id = $1",
    )
    .bind(id)
    .bind(consent.at)
    .bind(consent.source)
    .bind(consent.mid_hash)
    .execute(&mut *conn)
    .await
    .context("opting a person in again")?;
    Ok(Joined::Returned(id))
}

/// Opens a known person's 24-hour window at `at` (never moving it back).
async fn touch(conn: &mut PgConnection, id: i64, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE subscribers SET last_interaction_at = greatest(last_interaction_at, $2)
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(conn)
    .await
    .context("touching a subscriber")?;
    Ok(())
}

/// Opens the 24-hour window of the sender of a message that asks for something else than an
/// opt-in (stop, a data request), if the Page knows them; returns who they are.
pub async fn touch_sender(
    conn: &mut PgConnection,
    keyring: &Keyring,
    page_id: i64,
    fb_page_id: &str,
    psid: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE subscribers SET last_interaction_at = greatest(last_interaction_at, $3)
         WHERE page_id = $1 AND psid_index = $2 RETURNING id",
    )
    .bind(page_id)
    .bind(keyring.blind_index(fb_page_id, psid))
    .bind(at)
    .fetch_optional(conn)
    .await
    .context("touching a subscriber")
}

/// Stores the first name Facebook's User Profile API gave for a person, sealed; a person
/// erased meanwhile is simply not found.
pub async fn set_first_name(
    executor: impl sqlx::PgExecutor<'_>,
    keyring: &Keyring,
    subscriber_id: i64,
    first_name: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE subscribers SET first_name = $2 WHERE id = $1")
        .bind(subscriber_id)
        .bind(keyring.seal_str(SealedField::SubscriberFirstName, first_name))
        .execute(executor)
        .await
        .context("storing a first name")?;
    Ok(())
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
) -> anyhow::Result<Option<SubscriberStatus>> {
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

/// Counts the subscribers of a Page of the workspace by status; `None` when the workspace has
/// no such Page.
pub async fn counts(
    pool: &PgPool,
    workspace_id: i64,
    page_id: i64,
) -> anyhow::Result<Option<Counts>> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.status = 'active') AS active,
                count(*) FILTER (WHERE s.status = 'unsubscribed') AS unsubscribed,
                count(*) FILTER (WHERE s.status = 'unreachable') AS unreachable,
                count(*) FILTER (WHERE s.status = 'active'
                                   AND in_messaging_window(s.last_interaction_at))
                  AS in_window
         FROM pages p LEFT JOIN subscribers s ON s.page_id = p.id
         WHERE p.workspace_id = $1 AND p.id = $2 GROUP BY p.id",
    )
    .bind(workspace_id)
    .bind(page_id)
    .fetch_optional(pool)
    .await
    .context("counting subscribers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriberStatus::{Active, Unreachable, Unsubscribed};

    #[test]
    fn who_comes_back_and_how() {
        let standing = Standing::of;
        for start in [false, true] {
            assert!(!standing(Active, None).comes_back(start));
            assert!(standing(Unreachable, None).comes_back(start));
            assert!(standing(Unsubscribed, Some(OptOut::Objection)).comes_back(start));
        }
        assert!(!standing(Unsubscribed, Some(OptOut::Stop)).comes_back(false));
        assert!(standing(Unsubscribed, Some(OptOut::Stop)).comes_back(true));
        assert!(!standing(Unsubscribed, None).comes_back(false));
    }

    #[test]
    fn statuses_read_back_what_they_store() {
        for status in [Active, Unsubscribed, Unreachable] {
            assert_eq!(status.as_str().parse::<SubscriberStatus>().unwrap(), status);
        }
        assert!("gone".parse::<SubscriberStatus>().is_err());
    }
}
