//! The send job: one campaign message to one person, claimed with everything it needs (see
//! `moonengage_queue::sends`). The claim already moved the delivery to `sending`, so nobody
//! gets a campaign twice; this decides what to do with it — skip with a reason, put it back
//! unsent, or render, attach the unsubscribe option, wait for the Page's rate, send and
//! classify — and settles the row through the batched outcome writer. Everything that can fail
//! without sending (keys, rendering) comes before the rate limiter and the call, and gives the
//! row back unspent: a template never burns a delivery.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use moonengage_core::campaigns::{self, CampaignState};
use moonengage_core::pages::{self, PageStatus};
use moonengage_core::subscribers::{self, SubscriberStatus};
use moonengage_core::template::Variables;
use moonengage_messenger::{ErrorClass, OutgoingMessage, QuickReply, SendError};
use moonengage_ops::metrics;
use moonengage_privacy::crypto::SealedField;
use moonengage_privacy::unsubscribe::{self, UnsubscribeClaims};
use moonengage_queue::backend::QueueBackend;
use moonengage_queue::flush::Flusher;
use moonengage_queue::sends::{self, Outcome, Send, Sends, Settled};

use crate::Registration;
use crate::env::Env;

/// Label of the unsubscribe quick reply (Messenger allows 20 characters).
const UNSUBSCRIBE_TITLE: &str = "Unsubscribe";

/// Registers the send worker: batched claims of due deliveries, batched outcomes.
pub(crate) fn register(monitor: Monitor, registration: &Registration) -> Monitor {
    let registration = registration.clone();
    monitor.register(move |_restarts| {
        let r = &registration;
        let queue = &r.env.settings.queue;
        let sends = Sends::new(r.env.pool.clone(), r.name.clone(), queue.lease());
        let acks = Flusher::start(
            sends.clone(),
            queue.batch_size,
            Duration::from_millis(queue.flush_ms),
        );
        WorkerBuilder::new(format!("{}-{}", r.name, sends::KIND))
            .backend(QueueBackend::new(
                sends,
                r.wakers.of(sends::KIND),
                queue.batch_size,
                Duration::from_millis(queue.poll_interval_ms),
            ))
            .layer(metrics::JobMetricsLayer::new(sends::KIND))
            .data(r.env.clone())
            .data(acks)
            .concurrency(r.env.settings.worker.concurrency)
            .parallelize(tokio::spawn)
            .build(handle)
    })
}

/// Decides and makes one send, then waits until its outcome is durable.
async fn handle(
    send: Send,
    env: Data<Arc<Env>>,
    acks: Data<Flusher<Settled>>,
) -> Result<(), BoxDynError> {
    let (campaign_id, subscriber_id, page_id, attempt) = (
        send.campaign_id,
        send.subscriber_id,
        send.page_id,
        send.attempt,
    );
    // Boxed: the handler's own future then holds only a pointer across the outcome flush,
    // and every in-flight send's task stays small (see `run`).
    let outcome = match Box::pin(run(&env, send)).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // Infrastructure (database, keys): nothing was sent, try again later.
            tracing::warn!(campaign_id, error = %format!("{error:#}"), "send failed before sending; retrying");
            Outcome::Retry {
                after: env
                    .settings
                    .queue
                    .backoff(u32::try_from(attempt).unwrap_or(0)),
                spend_attempt: true,
                reason: "internal".into(),
            }
        }
    };
    if let Some(status) = final_status(&outcome) {
        metrics::send_outcome(page_id, status);
    }
    acks.settle(Settled {
        campaign_id,
        subscriber_id,
        outcome,
    })
    .await?;
    Ok(())
}

/// The delivery status an outcome ends in, for the send metrics (`None`: not settled yet).
fn final_status(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::Sent { .. } => Some("sent"),
        Outcome::Skipped(_) => Some("skipped"),
        Outcome::Failed(_) => Some("failed"),
        Outcome::Unknown(_) => Some("unknown"),
        Outcome::Retry { .. } => Some("retrying"),
        Outcome::Park => None,
    }
}

async fn run(env: &Env, send: Send) -> anyhow::Result<Outcome> {
    match send.campaign_state.parse()? {
        CampaignState::Running => {}
        cancelled @ CampaignState::Cancelled => {
            return Ok(Outcome::Skipped(cancelled.as_str().into()));
        }
        _ => return Ok(Outcome::Park),
    }
    if send.page_status.parse::<PageStatus>()? != PageStatus::Active {
        return Ok(Outcome::Park);
    }
    let status: SubscriberStatus = send.subscriber_status.parse()?;
    if status != SubscriberStatus::Active {
        return Ok(Outcome::Skipped(status.as_str().into()));
    }
    if !send.in_window {
        return Ok(Outcome::Skipped("outside_window".into()));
    }

    // Everything that can fail without sending comes first: a key this process cannot use yet
    // or a template that does not render puts nothing on the wire.
    let psid = env
        .keyring
        .open_string(SealedField::SubscriberPsid, &send.psid)?;
    let first_name = send
        .first_name
        .as_deref()
        .map(|sealed| {
            env.keyring
                .open_string(SealedField::SubscriberFirstName, sealed)
        })
        .transpose()?;
    let page_token = pages::open_token(&env.keyring, &send.access_token)?;
    let template = env.template(send.campaign_id, &send.template)?;
    let token = env.signer.sign(&UnsubscribeClaims {
        subscriber_id: send.subscriber_id,
        page_id: send.page_id,
        campaign_id: send.campaign_id,
    });
    let footer = env
        .settings
        .unsubscribe_link(&token)
        .map(|link| format!("\n\nUnsubscribe: {link}"))
        .unwrap_or_default();
    let text = match template.render(
        &Variables {
            first_name: first_name.as_deref(),
            page_name: &send.page_name,
        },
        &footer,
    ) {
        Ok(text) => text,
        Err(error) => {
            // Only a campaign created before templates were checked for people without a
            // name gets here: it is paused for an admin, and the send waits unspent.
            tracing::warn!(campaign_id = send.campaign_id, %error, "template does not render; campaign paused");
            campaigns::pause_unrenderable(&env.pool, send.campaign_id).await?;
            return Ok(Outcome::Park);
        }
    };

    let send_rate = u32::try_from(send.send_rate).unwrap_or(1);
    // The rare or short-lived steps are boxed so this future's size is what a send holds
    // while it waits for Facebook's answer, not the largest of every step (sqlx futures are
    // kilobytes): a worker keeps a thousand of them in flight.
    match Box::pin(env.pacer.wait_turn(send.page_id, send_rate)).await {
        Ok(waited) => metrics::rate_limiter_wait(send.page_id, waited),
        Err(after) => {
            return Ok(Outcome::Retry {
                after,
                spend_attempt: false,
                reason: "rate_limiter".into(),
            });
        }
    }

    let quick_replies = [QuickReply {
        title: UNSUBSCRIBE_TITLE.into(),
        payload: unsubscribe::payload(&token),
    }];
    let result = env
        .client
        .send(
            &page_token,
            &OutgoingMessage {
                psid: &psid,
                text: &text,
                quick_replies: &quick_replies,
            },
        )
        .await;
    match result {
        Ok(sent) => {
            if sent
                .usage_percent
                .is_some_and(|used| used >= u64::from(env.settings.rate_limit.slowdown_percent))
            {
                env.limiter.slow_down(send.page_id).await;
            }
            Ok(Outcome::Sent {
                message_id: sent.message_id,
            })
        }
        Err(error) => Box::pin(failed(env, &send, &error)).await,
    }
}

/// What a refused send means for this person, the Page and this row.
async fn failed(env: &Env, send: &Send, error: &SendError) -> anyhow::Result<Outcome> {
    let class = error.class();
    metrics::send_error(send.page_id, class.as_str());
    tracing::debug!(
        campaign_id = send.campaign_id,
        page_id = send.page_id,
        class = class.as_str(),
        %error,
        "send not accepted"
    );
    let reason = class.as_str().to_owned();
    Ok(match class {
        ErrorClass::RateLimited => {
            let pause = error.pause(Duration::from_secs(env.settings.rate_limit.pause_secs));
            pages::pause_for(&env.pool, send.page_id, pause.as_secs_f64()).await?;
            metrics::page_paused(send.page_id);
            Outcome::Retry {
                after: pause,
                spend_attempt: false,
                reason,
            }
        }
        ErrorClass::Transient if send.attempt < env.settings.queue.max_attempts => Outcome::Retry {
            after: env
                .settings
                .queue
                .backoff(u32::try_from(send.attempt).unwrap_or(0)),
            spend_attempt: true,
            reason,
        },
        ErrorClass::Transient | ErrorClass::Permanent => Outcome::Failed(reason),
        ErrorClass::WindowClosed => Outcome::Skipped(reason),
        ErrorClass::Ambiguous => Outcome::Unknown(reason),
        ErrorClass::RecipientPermanent => {
            subscribers::mark_unreachable(&env.pool, send.subscriber_id).await?;
            Outcome::Failed(reason)
        }
        ErrorClass::PageFatal => {
            pages::halt(&env.pool, send.page_id, class.as_str()).await?;
            // Not sent: this person's message waits with the paused campaign.
            Outcome::Park
        }
    })
}
