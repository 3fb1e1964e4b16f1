//! `webhook_events`: one minimal row per received event; an unprocessed row is the job of
//! processing it (claimed in batches by workers, see `moonengage_queue::events`).
//!
//! The row holds the Page, the sender sealed, a SHA-256 hash of the message id (unique: the
//! same event delivered again is not stored again), the time and the classification. Once a
//! worker has processed it, the sealed sender is erased and only the hash stays, so redeliveries
//! keep being recognised until retention removes the row.

use std::collections::HashSet;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use moonengage_messenger::webhook::{EventKind, InboundEvent, Intent};
use moonengage_ops::metrics;
use moonengage_privacy::crypto::{Keyring, SealedField};
use moonengage_queue::events::KIND;
use moonengage_queue::wake::Nudges;

use super::group::GroupWriter;

/// How many events of a request were new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Stored (and so queued).
    pub stored: usize,
    /// Already stored by an earlier delivery.
    pub duplicates: usize,
}

/// The dedupe key of an event: the hash of Facebook's message id; an event without one is keyed
/// by its sender's blind index (never the PSID itself), kind and time.
fn mid_hash(keyring: &Keyring, event: &InboundEvent) -> Vec<u8> {
    let mut hash = Sha256::new();
    match &event.mid {
        Some(mid) => hash.update(mid.as_bytes()),
        None => {
            hash.update(b"moonengage/event-without-mid/v1\0");
            hash.update(keyring.blind_index(&event.page_fb_id, &event.psid));
            hash.update(event.kind.as_str().as_bytes());
            hash.update(event.event_at.timestamp_millis().to_be_bytes());
        }
    }
    hash.finalize().to_vec()
}

/// An event sealed and hashed for storing; `bytes` is its share of a statement's parameters.
/// Owned, so the group writer can store it with other requests' events.
pub(super) struct NewEvent {
    mid_hash: Vec<u8>,
    sender_index: Vec<u8>,
    psid: Vec<u8>,
    page_fb_id: String,
    kind: &'static str,
    intent: &'static str,
    event_at: DateTime<Utc>,
}

impl NewEvent {
    fn new(keyring: &Keyring, event: &InboundEvent) -> NewEvent {
        NewEvent {
            mid_hash: mid_hash(keyring, event),
            sender_index: keyring.blind_index(&event.page_fb_id, &event.psid),
            psid: keyring.seal_str(SealedField::WebhookEventPsid, &event.psid),
            page_fb_id: event.page_fb_id.clone(),
            kind: event.kind.as_str(),
            intent: event.intent.as_str(),
            event_at: event.event_at,
        }
    }

    pub(super) fn bytes(&self) -> usize {
        // Lengths and values of the seven columns (a timestamp is 8 bytes).
        7 * 4
            + self.mid_hash.len()
            + self.sender_index.len()
            + self.page_fb_id.len()
            + self.psid.len()
            + 8
            + 16
            + 8
    }
}

/// Stores the events of one request; each new row is queued for the workers by being stored.
/// A usual delivery goes to the group writer, which stores it with the deliveries of other
/// requests waiting at the same moment in one statement (`group`); one too large for a statement
/// (see `STATEMENT_BYTES`) is stored alone in runs inside a transaction. Either way a delivery
/// is stored whole or not at all, and durable before this returns.
pub async fn store(
    pool: &PgPool,
    writer: &GroupWriter,
    nudges: &Nudges,
    keyring: &Keyring,
    events: &[InboundEvent],
) -> anyhow::Result<StoreOutcome> {
    let mut outcome = StoreOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    let rows: Vec<NewEvent> = events.iter().map(|e| NewEvent::new(keyring, e)).collect();
    let runs = moonengage_queue::runs(&rows, NewEvent::bytes);
    let stored = if runs.len() == 1 {
        writer.store(rows).await?
    } else {
        let mut tx = pool.begin().await.context("starting to store events")?;
        let mut hashes: HashSet<Vec<u8>> = HashSet::with_capacity(rows.len());
        for run in runs {
            let refs: Vec<&NewEvent> = run.iter().collect();
            hashes.extend(insert(&mut *tx, &refs).await?);
        }
        tx.commit().await.context("committing webhook events")?;
        first_stored(&rows, &mut hashes)
    };
    if stored.contains(&true) {
        nudges.wake(KIND);
    }
    for (event, stored) in events.iter().zip(stored) {
        let result = if stored {
            outcome.stored += 1;
            "accepted"
        } else {
            outcome.duplicates += 1;
            "duplicate"
        };
        metrics::webhook_received(event.kind.as_str(), result);
    }
    Ok(outcome)
}

/// Which of `rows` were stored, given the hashes a statement stored: the first row with a
/// stored hash is the one stored; a repeat in the same statement, or an event stored by an
/// earlier delivery, is a duplicate.
pub(super) fn first_stored(rows: &[NewEvent], stored: &mut HashSet<Vec<u8>>) -> Vec<bool> {
    rows.iter()
        .map(|row| stored.remove(&row.mid_hash))
        .collect()
}

/// One statement: stores `rows` that are new; returns the hashes of the events stored.
pub(super) async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[&NewEvent],
) -> anyhow::Result<Vec<Vec<u8>>> {
    sqlx::query_scalar(
        "INSERT INTO webhook_events
           (mid_hash, page_fb_id, psid, kind, intent, event_at, sender_index)
         SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                              $6::timestamptz[], $7::bytea[])
         ON CONFLICT (mid_hash) DO NOTHING
         RETURNING mid_hash",
    )
    .bind(
        rows.iter()
            .map(|r| r.mid_hash.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.page_fb_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.psid.as_slice()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.intent).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.sender_index.as_slice())
            .collect::<Vec<_>>(),
    )
    .fetch_all(executor)
    .await
    .context("storing webhook events")
}

/// A stored event waiting to be processed.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    /// Facebook's id of the Page.
    pub page_fb_id: String,
    /// The sealed sender (context [`SealedField::WebhookEventPsid`]).
    pub psid: Vec<u8>,
    /// `message` or `postback`.
    pub kind: String,
    /// See [`Intent::as_str`].
    pub intent: String,
    /// When the person acted.
    pub event_at: DateTime<Utc>,
    /// Hash of the message id: a new subscriber's consent evidence.
    pub mid_hash: Vec<u8>,
}

impl EventRow {
    /// What the event asks for.
    pub fn intent(&self) -> Intent {
        Intent::from_stored(&self.intent)
    }

    /// Whether it was a message (rather than a postback).
    pub fn is_message(&self) -> bool {
        self.kind == EventKind::Message.as_str()
    }
}

/// Locks the unprocessed events `ids` for the transaction `conn` is in, together with their
/// senders' earlier unprocessed ones, all in the order they happened: one person's events are
/// acted on in that order whichever batch gets there first (a batch holding an earlier event
/// then finds it done). Every batch locks in that one order, so two batches wait for each
/// other, never deadlock. An event processed already or parked as failed is left out.
pub async fn load_in_order(
    conn: &mut PgConnection,
    ids: &[i64],
) -> anyhow::Result<Vec<(i64, EventRow)>> {
    let rows: Vec<PendingRow> = sqlx::query_as(
        "WITH these AS (
             SELECT id, sender_index, event_at FROM webhook_events
             WHERE id = ANY($1) AND processed_at IS NULL AND failed_at IS NULL
         ),
         wanted AS (
             SELECT id FROM these
             UNION
             SELECT e.id FROM these t JOIN webhook_events e
                 ON e.sender_index = t.sender_index AND (e.event_at, e.id) < (t.event_at, t.id)
             WHERE e.processed_at IS NULL AND e.failed_at IS NULL
         )
         SELECT e.id, e.page_fb_id, e.psid, e.kind, e.intent, e.event_at, e.mid_hash
         FROM webhook_events e JOIN wanted w ON w.id = e.id
         WHERE e.processed_at IS NULL AND e.failed_at IS NULL
         ORDER BY e.event_at, e.id
         FOR UPDATE OF e",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
    .context("loading webhook events and their senders' earlier ones")?;
    Ok(rows.into_iter().map(|row| (row.id, row.event)).collect())
}

/// A row of [`load_in_order`].
#[derive(sqlx::FromRow)]
struct PendingRow {
    id: i64,
    #[sqlx(flatten)]
    event: EventRow,
}

/// Marks events processed, in one statement, and erases their sealed senders and sender
/// indexes; the hash of the message id alone stays for dedupe.
pub async fn finish(conn: &mut PgConnection, ids: &[i64]) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE webhook_events SET psid = NULL, sender_index = NULL, processed_at = now(),
             lease_until = NULL, locked_by = NULL
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(conn)
    .await
    .context("finishing webhook events")?;
    Ok(())
}
