//! The webhook-event job: what a person's message or postback means for their subscription. A
//! message from someone new opts them in (with the message id's hash as consent evidence); any
//! event opens the 24-hour window; a stop keyword or the unsubscribe option unsubscribes at once
//! and queues a confirmation; a data keyword files a data-subject request. The event row is
//! locked, acted on and marked processed in one transaction, so a redelivered job does nothing.

use anyhow::Context as _;
use chrono::Utc;
use moonengage_core::crypto::Context;
use moonengage_core::dsr::{self, Channel, DsrType, Subject};
use moonengage_core::incidents;
use moonengage_core::jobs::{Cause, NotifyJob, NotifyKind, WebhookJob};
use moonengage_core::metrics;
use moonengage_core::policy;
use moonengage_core::subscribers;
use moonengage_core::webhook::{self, EventRow, Intent};
use moonengage_queue::run::Run;
use moonengage_queue::{JobError, jobs};
use sqlx::PgConnection;

use crate::env::Env;

impl Run<Env> for WebhookJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        Ok(process(env, self.event_id).await?)
    }
}

async fn process(ctx: &Env, event_id: i64) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await.context("starting a webhook event")?;
    let Some(event) = webhook::load(&mut tx, event_id).await? else {
        return Ok(());
    };
    let page_id: Option<i64> = sqlx::query_scalar("SELECT id FROM pages WHERE fb_page_id = $1")
        .bind(&event.page_fb_id)
        .fetch_optional(&mut *tx)
        .await
        .context("finding the event's Page")?;
    match page_id {
        Some(page_id) => act(ctx, &mut tx, event_id, page_id, &event).await?,
        None => tracing::debug!(event_id, "event for an unregistered Page dropped"),
    }
    webhook::finish(&mut tx, event_id).await?;
    tx.commit().await.context("committing a webhook event")?;
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
        .open_string(Context::WebhookEventPsid, &event.psid)?;
    let index = ctx.keyring.blind_index(&event.page_fb_id, &psid);
    // Facebook's clock may run ahead of ours; the window never opens in the future.
    let at = event.event_at.min(Utc::now());
    let intent = event.intent();
    let subscriber: Option<i64> = if intent == Intent::None {
        sqlx::query_scalar(
            "INSERT INTO subscribers
               (page_id, psid_index, psid, opted_in_at, consent_source, consent_mid_hash,
                last_interaction_at)
             VALUES ($1, $2, $3, $4, $5, $6, $4)
             ON CONFLICT (page_id, psid_index) DO UPDATE
               SET last_interaction_at =
                   greatest(subscribers.last_interaction_at, EXCLUDED.last_interaction_at)
             RETURNING id",
        )
        .bind(page_id)
        .bind(&index)
        .bind(ctx.keyring.seal_str(Context::SubscriberPsid, &psid))
        .bind(at)
        .bind(if event.is_message() {
            "messenger"
        } else {
            "messenger_postback"
        })
        .bind(&event.mid_hash)
        .fetch_optional(&mut *tx)
        .await
        .context("opting in or touching a subscriber")?
    } else {
        sqlx::query_scalar(
            "UPDATE subscribers SET last_interaction_at = greatest(last_interaction_at, $3)
             WHERE page_id = $1 AND psid_index = $2 RETURNING id",
        )
        .bind(page_id)
        .bind(&index)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .context("touching a subscriber")?
    };
    // Their message opened the window: tell them of a policy update or an incident they have
    // not been told of yet (not when they ask to be erased — the erasure answers them).
    if let Some(subscriber_id) = subscriber
        && intent != Intent::Erase
    {
        let max_attempts = ctx.settings.queue.max_attempts;
        policy::queue_for_reply(&mut *tx, subscriber_id, event_id, max_attempts).await?;
        incidents::queue_for_reply(&mut *tx, subscriber_id, event_id, max_attempts).await?;
    }
    match intent {
        Intent::None => {}
        Intent::Stop | Intent::Unsubscribe => {
            let Some(subscriber_id) = subscriber else {
                return Ok(());
            };
            subscribers::unsubscribe(&mut *tx, subscriber_id, page_id).await?;
            jobs::enqueue(
                &mut *tx,
                &NotifyJob {
                    subscriber_id,
                    kind: NotifyKind::Unsubscribed,
                    cause: Cause::Event(event_id),
                },
                ctx.settings.queue.max_attempts,
            )
            .await?;
            tracing::debug!(event_id, subscriber_id, "unsubscribed by message");
            metrics::unsubscribed(if intent == Intent::Stop {
                "keyword"
            } else {
                "quick_reply"
            });
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
