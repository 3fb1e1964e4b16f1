//! Webhook events: what a person's message or postback means for their subscription. A
//! message from someone new opts them in (with the message id's hash as consent evidence), and
//! so does one from someone unreachable or who objected, coming back; a start keyword also
//! subscribes again someone who stopped. Each opt-in queues the look-up of their first name.
//! Any event opens the 24-hour window; a stop keyword or the unsubscribe option unsubscribes at
//! once and queues a confirmation; a data keyword files a data-subject request.
//!
//! Events are claimed in batches (`moonengage_queue::events`). A batch, with its senders'
//! earlier unprocessed events, is locked, acted on in the order the events happened and marked
//! processed in one transaction: every effect happens once, and "hi" then "STOP" can never end
//! subscribed, however batches race. When a batch fails, its events are tried one transaction
//! each, so one bad event is retried (and in the end parked as failed) alone: the others of its
//! batch are processed, and only its sender's later events wait for it, given back unspent.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use chrono::Utc;
use moonengage_core::profile::ProfileJob;
use moonengage_core::subscribers::{self, Consent, Joined, Via};
use moonengage_core::webhook::{self, EventRow};
use moonengage_messenger::webhook::Intent;
use moonengage_ops::metrics;
use moonengage_privacy::crypto::SealedField;
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_privacy::export_link;
use moonengage_privacy::incidents;
use moonengage_privacy::policy;
use moonengage_queue::backend::QueueBackend;
use moonengage_queue::events::{self, Batch, Unfinished, WebhookEvents};
use moonengage_queue::jobs;
use sqlx::PgConnection;

use crate::Registration;
use crate::env::Env;

/// Batches a worker process runs at once. Batches of one process overlap the database work of
/// one with the Rust work of the other; more only contend for the same rows and connections.
const BATCHES_IN_FLIGHT: usize = 2;

/// Registers the webhook worker: one claim per batch, one transaction per batch.
pub(crate) fn register(monitor: Monitor, registration: &Registration) -> Monitor {
    let registration = registration.clone();
    monitor.register(move |_restarts| {
        let r = &registration;
        let queue = &r.env.settings.queue;
        let source = WebhookEvents::new(r.env.pool.clone(), r.name.clone(), queue);
        WorkerBuilder::new(format!("{}-{}", r.name, events::KIND))
            .backend(QueueBackend::new(
                source.clone(),
                r.wakers.of(events::KIND),
                1,
                Duration::from_millis(queue.poll_interval_ms),
            ))
            .layer(metrics::JobMetricsLayer::new(events::KIND))
            .data(r.env.clone())
            .data(source)
            .concurrency(BATCHES_IN_FLIGHT)
            .parallelize(tokio::spawn)
            .build(handle)
    })
}

/// Processes a batch, then settles what could not be processed. A batch with an event that
/// failed is an `Err` for apalis (and the job metrics).
async fn handle(
    batch: Batch,
    env: Data<Arc<Env>>,
    source: Data<WebhookEvents>,
) -> Result<(), BoxDynError> {
    let ids: Vec<i64> = batch.events.iter().map(|event| event.id).collect();
    let Err(error) = process(&env, &ids).await else {
        return Ok(());
    };
    tracing::warn!(events = ids.len(), error = %format!("{error:#}"), "webhook batch failed; trying its events one by one");
    let mut unfinished = Vec::new();
    let mut held_back: HashSet<&[u8]> = HashSet::new();
    for event in &batch.events {
        let sender = event.sender_index.as_deref();
        if sender.is_some_and(|sender| held_back.contains(sender)) {
            unfinished.push(Unfinished::give_back(event));
            continue;
        }
        if let Err(error) = process(&env, &[event.id]).await {
            tracing::warn!(event_id = event.id, attempt = event.attempt, error = %format!("{error:#}"), "webhook event failed");
            held_back.extend(sender);
            unfinished.push(Unfinished::retry(
                event,
                format!("{error:#}"),
                &env.settings.queue,
            ));
        }
    }
    // Not settled (the database is gone): the leases expire and the events are claimed again.
    source.settle(&unfinished).await?;
    if unfinished.is_empty() {
        Ok(())
    } else {
        Err(error.into())
    }
}

/// Acts on events `ids` (and their senders' earlier unprocessed ones) and marks them processed,
/// in one transaction.
async fn process(ctx: &Env, ids: &[i64]) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await.context("starting webhook events")?;
    let events = webhook::load_in_order(&mut tx, ids).await?;
    if events.is_empty() {
        return Ok(());
    }
    let fb_page_ids: Vec<&str> = events
        .iter()
        .map(|(_, event)| event.page_fb_id.as_str())
        .collect();
    let pages: HashMap<String, i64> =
        sqlx::query_as("SELECT fb_page_id, id FROM pages WHERE fb_page_id = ANY($1)")
            .bind(&fb_page_ids)
            .fetch_all(&mut *tx)
            .await
            .context("finding the events' Pages")?
            .into_iter()
            .collect();
    for (event_id, event) in &events {
        match pages.get(&event.page_fb_id) {
            Some(&page_id) => act(ctx, &mut tx, *event_id, page_id, event).await?,
            None => tracing::debug!(event_id, "event for an unregistered Page dropped"),
        }
    }
    let done: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
    webhook::finish(&mut tx, &done).await?;
    tx.commit().await.context("committing webhook events")?;
    Ok(())
}

async fn act(
    ctx: &Env,
    tx: &mut PgConnection,
    event_id: i64,
    page_id: i64,
    event: &EventRow,
) -> anyhow::Result<()> {
    let psid = ctx
        .keyring
        .open_string(SealedField::WebhookEventPsid, &event.psid)?;
    // Facebook's clock may run ahead of ours; the window never opens in the future.
    let at = event.event_at.min(Utc::now());
    let intent = event.intent();
    let subscriber: Option<i64> = if intent.opts_in() {
        let consent = Consent {
            page_id,
            fb_page_id: &event.page_fb_id,
            psid: &psid,
            at,
            source: if event.is_message() {
                "messenger"
            } else {
                "messenger_postback"
            },
            mid_hash: &event.mid_hash,
            start: intent == Intent::Start,
        };
        let joined = subscribers::opt_in(&mut *tx, &ctx.keyring, &consent).await?;
        match joined {
            Joined::New(subscriber_id) | Joined::Returned(subscriber_id) => {
                jobs::enqueue(
                    &mut *tx,
                    &ProfileJob { subscriber_id },
                    ctx.settings.queue.max_attempts,
                )
                .await?;
                metrics::opted_in(if matches!(joined, Joined::New(_)) {
                    "new"
                } else {
                    "returned"
                });
            }
            Joined::Known(_) => {}
        }
        Some(joined.subscriber_id())
    } else {
        subscribers::touch_sender(
            &mut *tx,
            &ctx.keyring,
            page_id,
            &event.page_fb_id,
            &psid,
            at,
        )
        .await?
    };
    // Their message opened the window: tell them of a policy update or an incident they have
    // not been told of yet and send the export links that waited for them (not when they ask to
    // be erased — the erasure answers them).
    if let Some(subscriber_id) = subscriber
        && intent != Intent::Erase
    {
        let max_attempts = ctx.settings.queue.max_attempts;
        policy::queue_for_reply(&mut *tx, subscriber_id, event_id, max_attempts).await?;
        export_link::queue_for_reply(&mut *tx, subscriber_id, event_id, max_attempts).await?;
        incidents::queue_for_reply(&mut *tx, subscriber_id, event_id, max_attempts).await?;
    }
    match intent {
        Intent::None | Intent::Start => {}
        Intent::Stop | Intent::Unsubscribe => {
            let Some(subscriber_id) = subscriber else {
                return Ok(());
            };
            let via = if intent == Intent::Stop {
                Via::Keyword(event_id)
            } else {
                Via::QuickReply(event_id)
            };
            let max_attempts = ctx.settings.queue.max_attempts;
            subscribers::unsubscribe(&mut *tx, subscriber_id, page_id, via, max_attempts).await?;
        }
        Intent::Export | Intent::Erase => {
            let kind = if intent == Intent::Export {
                DsrType::Export
            } else {
                DsrType::Erasure
            };
            let subject = Subject {
                page_id,
                subscriber_id: subscriber,
                psid: Some(psid),
            };
            let filed = dsr::file(
                tx,
                &ctx.keyring,
                kind,
                Channel::Messenger,
                &subject,
                ctx.settings.queue.max_attempts,
            )
            .await?;
            tracing::debug!(
                event_id,
                request_id = filed.id,
                kind = kind.as_str(),
                "request filed"
            );
        }
    }
    Ok(())
}
