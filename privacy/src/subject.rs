//! Who a request is about, as sealed in `dsr_requests.subject_ref`, and the subscriber row that
//! person has (if any).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::crypto::{Keyring, SealedField};
use crate::dsr::Subject;

/// A sealed subject: a person of a Page (Messenger, admin), or only the app-scoped id that
/// Facebook's data-deletion callback names, which no row of ours is keyed by.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum SealedSubject {
    /// A Page and what we know of the person there.
    Page(Subject),
    /// Facebook's app-scoped user id, from the data-deletion callback.
    AppScoped {
        /// The id; personal data, so it stays sealed and is dropped on completion.
        app_scoped_id: String,
    },
}

impl SealedSubject {
    /// Opens `dsr_requests.subject_ref`.
    pub fn open(keyring: &Keyring, sealed: &[u8]) -> anyhow::Result<SealedSubject> {
        let json = keyring
            .open(SealedField::DsrSubject, sealed)
            .context("opening a request's subject")?;
        serde_json::from_slice(&json).context("reading a request's subject")
    }

    /// Seals a subject for `dsr_requests.subject_ref`.
    pub fn seal(&self, keyring: &Keyring) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_vec(self).context("encoding a request's subject")?;
        Ok(keyring.seal(SealedField::DsrSubject, &json))
    }
}

/// The subscriber row of a person, with their Page.
#[derive(sqlx::FromRow)]
pub struct Person {
    /// `subscribers.id`.
    pub subscriber_id: i64,
    /// `pages.id`.
    pub page_id: i64,
    /// Facebook's id of the Page.
    pub fb_page_id: String,
    /// The Page's name, for messages and the export.
    pub page_name: String,
    /// The sealed PSID.
    pub psid: Vec<u8>,
    /// The sealed first name, when kept.
    pub first_name: Option<Vec<u8>>,
    /// `active`, `unsubscribed` or `unreachable`.
    pub status: String,
    /// Consent evidence: when they opted in.
    pub opted_in_at: DateTime<Utc>,
    /// Consent evidence: how.
    pub consent_source: String,
    /// Consent evidence: hash of their first message's id.
    pub consent_mid_hash: Option<Vec<u8>>,
    /// Their last message, which opened the 24-hour window.
    pub last_interaction_at: DateTime<Utc>,
    /// When they unsubscribed.
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// `stop` or `objection`: what brings them back (see `subscribers::OptOut`).
    pub unsubscribed_by: Option<String>,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// Whether their 24-hour window is open now.
    pub in_window: bool,
}

/// Finds the person's subscriber row, by PSID when known (they may have opted in since the
/// request was filed), else by the subscriber id the request recorded; locks it for the
/// transaction `conn` is in.
pub async fn find_person(
    conn: &mut PgConnection,
    keyring: &Keyring,
    subject: &Subject,
) -> anyhow::Result<Option<Person>> {
    let fb_page_id: Option<String> =
        sqlx::query_scalar("SELECT fb_page_id FROM pages WHERE id = $1")
            .bind(subject.page_id)
            .fetch_optional(&mut *conn)
            .await
            .context("finding the request's Page")?;
    let Some(fb_page_id) = fb_page_id else {
        return Ok(None);
    };
    let index = subject
        .psid
        .as_deref()
        .map(|psid| keyring.blind_index(&fb_page_id, psid));
    sqlx::query_as(
        "SELECT s.id AS subscriber_id, s.page_id, p.fb_page_id, p.name AS page_name, s.psid,
                s.first_name, s.status, s.opted_in_at, s.consent_source, s.consent_mid_hash,
                s.last_interaction_at, s.unsubscribed_at, s.unsubscribed_by, s.created_at,
                in_messaging_window(s.last_interaction_at) AS in_window
         FROM subscribers s JOIN pages p ON p.id = s.page_id
         WHERE s.page_id = $1
           AND CASE WHEN $2::bytea IS NOT NULL THEN s.psid_index = $2 ELSE s.id = $3 END
         FOR UPDATE OF s",
    )
    .bind(subject.page_id)
    .bind(index)
    .bind(subject.subscriber_id)
    .fetch_optional(&mut *conn)
    .await
    .context("finding the request's subscriber")
}

/// Whether two subjects name the same person of the same Page.
pub fn same_person(a: &Subject, b: &Subject) -> bool {
    a.page_id == b.page_id
        && ((a.psid.is_some() && a.psid == b.psid)
            || (a.subscriber_id.is_some() && a.subscriber_id == b.subscriber_id))
}
