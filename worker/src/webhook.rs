//! The webhook-event job: what a person's message or postback means for their subscription. A
//! message from someone new opts them in (with the message id's hash as consent evidence), and
//! so does one from someone unreachable or who objected, coming back; a start keyword also
//! subscribes again someone who stopped. Each opt-in queues the look-up of their first name.
//! Any event opens the 24-hour window; a stop keyword or the unsubscribe option unsubscribes at
//! once and queues a confirmation; a data keyword files a data-subject request. The event row,
//! with its sender's earlier unprocessed ones, is locked, acted on in the order they happened
//! and marked processed in one transaction: a redelivered job does nothing, and "hi" then
//! "STOP" can never end subscribed, however the jobs of one delivery race.

use anyhow::Context as _;
use chrono::Utc;
use moonengage_core::jobs::WebhookJob;
use moonengage_core::profile::ProfileJob;
use moonengage_core::subscribers::{self, Consent, Joined, Via};
use moonengage_core::webhook::{self, EventRow};
use moonengage_messenger::webhook::Intent;
use moonengage_ops::metrics;
use moonengage_privacy::crypto::Context;
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_privacy::export_link;
use moonengage_privacy::incidents;
use moonengage_privacy::policy;
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
    for (event_id, event) in webhook::load_in_order(&mut tx, event_id).await? {
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
    }
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
        .open_string(Context::WebhookEventPsid, &event.psid)?;
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
