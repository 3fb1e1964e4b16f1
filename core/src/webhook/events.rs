//! `webhook_events`: one minimal row per received event, queued in the same transaction.
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

use super::intent::Intent;
use super::payload::{EventKind, InboundEvent};
use crate::crypto::{Context, Keyring};
use crate::jobs::WebhookJob;
use crate::metrics;
use moonengage_queue::jobs;

/// How many events of a request were new.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Stored and queued.
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
    psid: Vec<u8>,
    event: &'a InboundEvent,
}

impl NewEvent<'_> {
    fn bytes(&self) -> usize {
        // Lengths and values of the six columns (a timestamp is 8 bytes).
        6 * 4 + self.mid_hash.len() + self.event.page_fb_id.len() + self.psid.len() + 8 + 16 + 8
    }
}

/// Stores the events of one request and queues a job for each new one. A usual delivery is one
/// statement: the insert and its jobs in one round trip, atomic, with no transaction held open
/// across the network. One too large for a statement (see `STATEMENT_BYTES`) is stored in runs
/// inside a transaction, so a delivery is always stored whole or not at all.
pub async fn store(
    pool: &PgPool,
    keyring: &Keyring,
    events: &[InboundEvent],
    max_attempts: i32,
) -> anyhow::Result<StoreOutcome> {
    let mut outcome = StoreOutcome::default();
    if events.is_empty() {
        return Ok(outcome);
    }
    let rows: Vec<NewEvent> = events
        .iter()
        .map(|event| NewEvent {
            mid_hash: mid_hash(keyring, event),
            psid: keyring.seal_str(Context::WebhookEventPsid, &event.psid),
            event,
        })
        .collect();
    let runs = moonengage_queue::runs(&rows, NewEvent::bytes);
    let mut stored: HashSet<Vec<u8>> = HashSet::with_capacity(rows.len());
    if let [run] = runs.as_slice() {
        stored.extend(insert(pool, run, max_attempts).await?);
    } else {
        let mut tx = pool.begin().await.context("starting to store events")?;
        for run in runs {
            stored.extend(insert(&mut *tx, run, max_attempts).await?);
        }
        tx.commit().await.context("committing webhook events")?;
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

/// One statement: stores `rows` that are new and queues a webhook job for each; returns the
/// hashes of the events stored.
async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &[NewEvent<'_>],
    max_attempts: i32,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let statement = format!(
        "WITH stored AS (
             INSERT INTO webhook_events (mid_hash, page_fb_id, psid, kind, intent, event_at)
             SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                                  $6::timestamptz[])
             ON CONFLICT (mid_hash) DO NOTHING
             RETURNING id, mid_hash
         ),
         source AS (
             SELECT id::text AS key, jsonb_build_object('event_id', id) AS payload FROM stored
         ),
         {}
         SELECT stored.mid_hash FROM stored LEFT JOIN woken ON true",
        jobs::queue_each_of_source::<WebhookJob>(max_attempts)
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
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
        .fetch_all(executor)
        .await
        .context("storing webhook events and queuing their jobs")
}

/// A stored event waiting to be processed.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    /// Facebook's id of the Page.
    pub page_fb_id: String,
    /// The sealed sender (context [`Context::WebhookEventPsid`]).
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

/// Locks an unprocessed event for the transaction `conn` is in; `None` when it was processed
/// already (a redelivered job) or no longer exists.
pub async fn load(conn: &mut PgConnection, id: i64) -> anyhow::Result<Option<EventRow>> {
    sqlx::query_as(
        "SELECT page_fb_id, psid, kind, intent, event_at, mid_hash FROM webhook_events
         WHERE id = $1 AND processed_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .context("loading a webhook event")
}

/// Marks an event processed and erases its sealed sender; the hash alone stays for dedupe.
pub async fn finish(conn: &mut PgConnection, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE webhook_events SET psid = NULL, processed_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .context("finishing a webhook event")?;
    Ok(())
}
