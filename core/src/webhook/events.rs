//! `webhook_events`: one minimal row per received event, queued in the same transaction.
//!
//! The row holds the Page, the sender sealed, a SHA-256 hash of the message id (unique: the
//! same event delivered again is not stored again), the time and the classification. Once a
//! worker has processed it, the sealed sender is erased and only the hash stays, so redeliveries
//! keep being recognised until retention removes the row.

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

/// Stores the events of one request and queues a job for each new one, in one transaction: an
/// event is either stored and queued, or neither.
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
    let mut results = Vec::with_capacity(events.len());
    let mut tx = pool.begin().await.context("starting to store events")?;
    for event in events {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhook_events (mid_hash, page_fb_id, psid, kind, intent, event_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (mid_hash) DO NOTHING
             RETURNING id",
        )
        .bind(mid_hash(keyring, event))
        .bind(&event.page_fb_id)
        .bind(keyring.seal_str(Context::WebhookEventPsid, &event.psid))
        .bind(event.kind.as_str())
        .bind(event.intent.as_str())
        .bind(event.event_at)
        .fetch_optional(&mut *tx)
        .await
        .context("storing a webhook event")?;
        match id {
            Some(event_id) => {
                jobs::enqueue(&mut *tx, &WebhookJob { event_id }, max_attempts).await?;
                outcome.stored += 1;
                results.push((event.kind.as_str(), "accepted"));
            }
            None => {
                outcome.duplicates += 1;
                results.push((event.kind.as_str(), "duplicate"));
            }
        }
    }
    tx.commit().await.context("committing webhook events")?;
    for (kind, result) in results {
        metrics::webhook_received(kind, result);
    }
    Ok(outcome)
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
