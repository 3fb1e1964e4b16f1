//! Erasure (GDPR Art. 17): every row about a person, in every table, in one transaction — their
//! subscriber row, deliveries, exports, the queued and finished jobs that name them, and the
//! webhook events they sent, unprocessed ones included (an unprocessed event is its own queued
//! work: deleting it is dequeuing it) — and their other open requests closed. Campaign counters
//! stay: they are totals, not about anyone. What each column needs is in [`crate::catalog`] (its
//! [`Erasure`](crate::catalog::Erasure)); the integration tests check this against it.

use anyhow::Context as _;
use sqlx::PgConnection;

use crate::crypto::{Keyring, SealedField};
use crate::dsr::Subject;
use crate::requests;
use crate::subject::Person;
use moonengage_queue::{jobs, sends};

/// What an erasure removed (counts only: the audit outcome holds no personal data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Subscriber rows (0 or 1).
    pub subscribers: u64,
    /// Delivery rows.
    pub deliveries: u64,
    /// Job rows, queued or finished.
    pub jobs: u64,
    /// Webhook event rows.
    pub webhook_events: u64,
    /// Exports not yet downloaded.
    pub exports: u64,
    /// Other open requests about them, closed.
    pub requests_closed: u64,
}

impl Erased {
    /// Whether anything about the person was held.
    pub fn nothing_held(&self) -> bool {
        *self == Erased::default()
    }

    /// The outcome recorded on the request.
    pub fn summary(&self) -> String {
        format!(
            "erased: {} subscriber, {} deliveries, {} jobs, {} webhook events, {} exports; \
             {} other open requests closed",
            self.subscribers,
            self.deliveries,
            self.jobs,
            self.webhook_events,
            self.exports,
            self.requests_closed
        )
    }
}

/// Erases everything about the person `subject` names (and `person`, their subscriber row
/// found and locked in this transaction, when they have one). Erasing someone already gone
/// removes nothing, so running it twice is harmless. `request_id` is the erasure itself, which
/// stays open for the caller to complete in the same transaction.
pub async fn erase(
    tx: &mut PgConnection,
    keyring: &Keyring,
    request_id: i64,
    subject: &Subject,
    person: Option<&Person>,
) -> anyhow::Result<Erased> {
    let mut erased = Erased::default();
    let psid = match (person, &subject.psid) {
        (Some(person), _) => Some(keyring.open_string(SealedField::SubscriberPsid, &person.psid)?),
        (None, psid) => psid.clone(),
    };
    let events = webhook_events_of(tx, keyring, subject.page_id, psid.as_deref(), person).await?;
    let subscriber_id = person.map(|p| p.subscriber_id);
    erased.webhook_events = sqlx::query("DELETE FROM webhook_events WHERE id = ANY($1)")
        .bind(&events)
        .execute(&mut *tx)
        .await
        .context("erasing webhook events")?
        .rows_affected();
    if let Some(id) = subscriber_id {
        erased.jobs = jobs::delete_about(&mut *tx, id)
            .await
            .context("erasing jobs")?;
        erased.exports = sqlx::query("DELETE FROM exports WHERE subscriber_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("erasing exports")?
            .rows_affected();
        erased.deliveries = sends::erase(&mut *tx, id)
            .await
            .context("erasing deliveries")?;
        erased.subscribers = sqlx::query("DELETE FROM subscribers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("erasing the subscriber")?
            .rows_affected();
    }
    let about = Subject {
        page_id: subject.page_id,
        subscriber_id,
        psid,
    };
    for open in requests::open_about(tx, keyring, &about).await? {
        if open.id != request_id
            && requests::complete(&mut *tx, open.id, "closed: the person's data was erased").await?
        {
            erased.requests_closed += 1;
        }
    }
    Ok(erased)
}

/// The webhook events the person sent: those not processed yet (their sender is still sealed:
/// each of the Page's is opened and compared), and the processed one whose message opted them
/// in (its hash is their consent evidence). Other processed events hold no sender any more.
async fn webhook_events_of(
    tx: &mut PgConnection,
    keyring: &Keyring,
    page_id: i64,
    psid: Option<&str>,
    person: Option<&Person>,
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    if let Some(psid) = psid {
        let pending: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT e.id, e.psid FROM webhook_events e JOIN pages p ON p.fb_page_id = e.page_fb_id
             WHERE p.id = $1 AND e.psid IS NOT NULL
             FOR UPDATE OF e",
        )
        .bind(page_id)
        .fetch_all(&mut *tx)
        .await
        .context("reading unprocessed webhook events")?;
        for (id, sealed) in pending {
            if keyring.open_string(SealedField::WebhookEventPsid, &sealed)? == psid {
                ids.push(id);
            }
        }
    }
    if let Some(hash) = person.and_then(|p| p.consent_mid_hash.as_deref()) {
        let consent: Option<i64> =
            sqlx::query_scalar("SELECT id FROM webhook_events WHERE mid_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .context("finding the consent event")?;
        ids.extend(consent.filter(|id| !ids.contains(id)));
    }
    Ok(ids)
}
