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
