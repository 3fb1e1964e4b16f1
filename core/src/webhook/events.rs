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
struct NewEvent<'a> {
    mid_hash: Vec<u8>,
    sender_index: Vec<u8>,
    psid: Vec<u8>,
    event: &'a InboundEvent,
}

impl NewEvent<'_> {
    fn bytes(&self) -> usize {
        // Lengths and values of the seven columns (a timestamp is 8 bytes).
        7 * 4
            + self.mid_hash.len()
            + self.sender_index.len()
            + self.event.page_fb_id.len()
            + self.psid.len()
            + 8
            + 16
            + 8
    }
}

/// Stores the events of one request; each new row is queued for the workers by being stored. A
/// usual delivery is one statement, with no transaction held open across the network. One too large for a statement (see `STATEMENT_BYTES`) is stored in runs
/// inside a transaction, so a delivery is always stored whole or not at all.
pub async fn store(
    pool: &PgPool,
    nudges: &Nudges,
    keyring: &Keyring,
    events: &[InboundEvent],
) -> anyhow::Result<StoreOutcome> {
    let mut outcome = StoreOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    let rows: Vec<NewEvent> = events
        .iter()
        .map(|event| NewEvent {
            mid_hash: mid_hash(keyring, event),
            sender_index: keyring.blind_index(&event.page_fb_id, &event.psid),
            psid: keyring.seal_str(SealedField::WebhookEventPsid, &event.psid),
            event,
        })
        .collect();
    let runs = moonengage_queue::runs(&rows, NewEvent::bytes);
    let mut stored: HashSet<Vec<u8>> = HashSet::with_capacity(rows.len());
    if let [run] = runs.as_slice() {
        stored.extend(insert(pool, run).await?);
    } else {
        let mut tx = pool.begin().await.context("starting to store events")?;
        for run in runs {
            stored.extend(insert(&mut *tx, run).await?);
        }
        tx.commit().await.context("committing webhook events")?;
    }
    if !stored.is_empty() {
        nudges.wake(KIND);
    }
    for row in &rows {
        // The first event with a stored hash is the one stored; a repeat in the same delivery
        // or an event stored by an earlier delivery is a duplicate.
        let result = if stored.remove(&row.mid_hash) {
            outcome.stored += 1;
            "accepted"
        } else {
            outcome.duplicates += 1;
            "duplicate"
        };
        metrics::webhook_received(row.event.kind.as_str(), result);
    }
    Ok(outcome)
}

/// One statement: stores `rows` that are new; returns the hashes of the events stored.
async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[NewEvent<'_>],
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
            .map(|r| r.event.page_fb_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.psid.as_slice()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.event.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.event.intent.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.event.event_at).collect::<Vec<_>>())
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
