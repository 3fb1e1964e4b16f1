//! The send job: one campaign message to one person, following DESIGN's delivery semantics —
//! skip with a reason, claim the delivery so nobody gets a campaign twice, render, attach the
//! unsubscribe option, call the Send API, record the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::{Attempt, BoxDynError, Data, TaskId};
use moonengage_core::crypto::{Context, Keyring};
use moonengage_core::messenger::{self, ErrorClass, OutgoingMessage, QuickReply, SendError};
use moonengage_core::metrics;
use moonengage_core::pages;
use moonengage_core::queue::{self, SendJob};
use moonengage_core::rate_limit::{RateLimitSettings, RateLimiter};
use moonengage_core::settings::{QueueSettings, Settings};
use moonengage_core::template::{Template, Variables};
use moonengage_core::unsubscribe::{self, UnsubscribeClaims, UnsubscribeSigner};
use sqlx::PgPool;

/// A job that found its campaign paused, then resumed while it looked, tries again after this.
const RECHECK: Duration = Duration::from_secs(1);

/// Attempts at writing a delivery's outcome before the job gives up (and retries later).
const OUTCOME_WRITE_TRIES: u32 = 3;

/// Label of the unsubscribe quick reply (Messenger allows 20 characters).
const UNSUBSCRIBE_TITLE: &str = "Unsubscribe";

/// What every send job of a worker shares: connections, keys and compiled templates.
pub struct SendContext {
    pool: PgPool,
    keyring: Keyring,
    client: messenger::Client,
    signer: UnsubscribeSigner,
    limiter: Arc<RateLimiter>,
    queue: QueueSettings,
    rate_limit: RateLimitSettings,
    templates: Mutex<HashMap<i64, Arc<Template>>>,
}

impl SendContext {
    /// Bundles what a send needs; built once per worker process.
    pub fn new(
        pool: PgPool,
        keyring: Keyring,
        client: messenger::Client,
        signer: UnsubscribeSigner,
        limiter: Arc<RateLimiter>,
        settings: &Settings,
    ) -> SendContext {
        SendContext {
            pool,
            keyring,
            client,
            signer,
            limiter,
            queue: settings.queue.clone(),
            rate_limit: settings.rate_limit.clone(),
            templates: Mutex::new(HashMap::new()),
        }
    }

    /// A campaign's template is fixed once it runs, so each worker compiles it once.
    fn template(&self, campaign_id: i64, source: &str) -> anyhow::Result<Arc<Template>> {
        let mut cache = self
            .templates
            .lock()
            .map_err(|_| anyhow::anyhow!("template cache poisoned"))?;
        if let Some(template) = cache.get(&campaign_id) {
            return Ok(template.clone());
        }
        let template = Arc::new(Template::compile(source)?);
        cache.insert(campaign_id, template.clone());
        Ok(template)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    campaign_state: String,
    template: String,
    page_id: i64,
    page_name: String,
    page_status: String,
    page_paused_for: Option<f64>,
    send_rate: i32,
    access_token: Vec<u8>,
    subscriber_status: Option<String>,
    psid: Option<Vec<u8>>,
    first_name: Option<Vec<u8>>,
    in_window: Option<bool>,
}

/// The apalis handler. Every outcome of the send itself is recorded by `run`; an error here is
/// an infrastructure failure (database, keys). It is retried with backoff by moving the job's
/// run time — apalis alone would refetch a failed row at once and use up its attempts within a
/// second of a database blip. Only if even that fails does the error reach apalis.
pub async fn handle(
    job: SendJob,
    task_id: TaskId,
    attempt: Attempt,
    ctx: Data<Arc<SendContext>>,
) -> Result<(), BoxDynError> {
    let task_id = task_id.to_string();
    let Err(error) = run(&ctx, job, &task_id).await else {
        return Ok(());
    };
    let delay = queue::backoff(
        &ctx.queue,
        u32::try_from(attempt.current()).unwrap_or(u32::MAX),
    );
    tracing::warn!(
        campaign_id = job.campaign_id,
        subscriber_id = job.subscriber_id,
        retry_in_ms = delay.as_millis() as u64,
        error = %format!("{error:#}"),
        "send job failed; retrying"
    );
    queue::reschedule(&ctx.pool, &task_id, delay, true)
        .await
        .map_err(|_| error.into())
}

async fn run(ctx: &SendContext, job: SendJob, task_id: &str) -> anyhow::Result<()> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT c.state AS campaign_state, c.template, c.page_id, p.name AS page_name,
                p.status AS page_status, p.access_token, p.send_rate,
                extract(epoch FROM p.paused_until - now())::float8 AS page_paused_for,
                s.status AS subscriber_status, s.psid, s.first_name,
                s.last_interaction_at > now() - interval '24 hours' AS in_window
         FROM campaigns c
         JOIN pages p ON p.id = c.page_id
         LEFT JOIN subscribers s ON s.id = $2 AND s.page_id = c.page_id
         WHERE c.id = $1",
    )
    .bind(job.campaign_id)
    .bind(job.subscriber_id)
    .fetch_optional(&ctx.pool)
    .await
    .context("loading the campaign and recipient")?;
    // Campaign or person erased since the job was queued: there is nothing left to send to.
    let Some(row) = row else { return Ok(()) };
    let (Some(status), Some(psid), Some(in_window)) = (
        row.subscriber_status.as_deref(),
        row.psid.as_ref(),
        row.in_window,
    ) else {
        return Ok(());
    };

    match row.campaign_state.as_str() {
        "cancelled" => return skip(ctx, job, row.page_id, "cancelled").await,
        "paused" => return park(ctx, job, task_id).await,
        _ => {}
    }
    if row.page_status != "active" {
        return park(ctx, job, task_id).await;
    }
    if let Some(seconds) = row.page_paused_for.filter(|s| *s > 0.0) {
        queue::reschedule(&ctx.pool, task_id, Duration::from_secs_f64(seconds), false).await?;
        return Ok(());
    }
    if status != "active" {
        return skip(ctx, job, row.page_id, status).await;
    }
    if !in_window {
        return skip(ctx, job, row.page_id, "outside_window").await;
    }

    // Everything that needs the keys is opened before the claim: a key this process cannot use
    // yet must fail the job (and retry it), not strand a claimed delivery as `unknown`.
    let psid = ctx.keyring.open_string(Context::SubscriberPsid, psid)?;
    let first_name = row
        .first_name
        .as_deref()
        .map(|sealed| {
            ctx.keyring
                .open_string(Context::SubscriberFirstName, sealed)
        })
        .transpose()?;
    let page_token = pages::open_token(&ctx.keyring, &row.access_token)?;
    let template = ctx.template(job.campaign_id, &row.template)?;

    let send_rate = u32::try_from(row.send_rate).unwrap_or(1);
    match ctx.limiter.wait_turn(row.page_id, send_rate).await {
        Ok(waited) => metrics::rate_limiter_wait(row.page_id, waited),
        Err(after) => {
            queue::reschedule(&ctx.pool, task_id, after, false).await?;
            return Ok(());
        }
    }

    let Some(attempts) = claim(ctx, job).await? else {
        return Ok(());
    };

    let token = ctx.signer.sign(&UnsubscribeClaims {
        subscriber_id: job.subscriber_id,
        page_id: row.page_id,
        campaign_id: job.campaign_id,
    });
    let footer = ctx
        .signer
        .link(&token)
        .map(|link| format!("\n\nUnsubscribe: {link}"))
        .unwrap_or_default();
    let text = match template.render(
        &Variables {
            first_name: first_name.as_deref(),
            page_name: &row.page_name,
        },
        &footer,
    ) {
        Ok(text) => text,
        Err(error) => {
            return finish(
                ctx,
                job,
                row.page_id,
                "failed",
                Some(&format!("template: {error}")),
                None,
            )
            .await;
        }
    };
    let quick_replies = [QuickReply {
        title: UNSUBSCRIBE_TITLE.into(),
        payload: unsubscribe::payload(&token),
    }];
    let result = ctx
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
                .is_some_and(|used| used >= u64::from(ctx.rate_limit.slowdown_percent))
            {
                ctx.limiter.slow_down(row.page_id).await;
            }
            finish(ctx, job, row.page_id, "sent", None, Some(&sent.message_id)).await
        }
        Err(error) => failed(ctx, job, row.page_id, task_id, attempts, &error).await,
    }
}

/// Records what a failed send means for this person, and retries when it may still work.
async fn failed(
    ctx: &SendContext,
    job: SendJob,
    page_id: i64,
    task_id: &str,
    attempts: i32,
    error: &SendError,
) -> anyhow::Result<()> {
    let class = error.class();
    metrics::send_error(page_id, class);
    tracing::info!(
        campaign_id = job.campaign_id,
        subscriber_id = job.subscriber_id,
        page_id,
        class = class.as_str(),
        %error,
        "send not accepted"
    );
    let reason = Some(class.as_str());
    match class {
        ErrorClass::RateLimited => {
            let pause = match error {
                SendError::Api {
                    regain_access_minutes: Some(minutes),
                    ..
                } if *minutes > 0 => Duration::from_secs(minutes * 60),
                _ => Duration::from_secs(ctx.rate_limit.pause_secs),
            };
            pages::pause_for(&ctx.pool, page_id, pause.as_secs_f64()).await?;
            metrics::page_paused(page_id);
            finish(ctx, job, page_id, "retrying", reason, None).await?;
            queue::reschedule(&ctx.pool, task_id, pause, false).await?;
            Ok(())
        }
        ErrorClass::Transient if attempts < ctx.queue.max_attempts => {
            finish(ctx, job, page_id, "retrying", reason, None).await?;
            let delay = queue::backoff(&ctx.queue, attempts.unsigned_abs());
            queue::reschedule(&ctx.pool, task_id, delay, true).await?;
            Ok(())
        }
        ErrorClass::Transient | ErrorClass::Permanent => {
            finish(ctx, job, page_id, "failed", reason, None).await
        }
        ErrorClass::WindowClosed => finish(ctx, job, page_id, "skipped", reason, None).await,
        ErrorClass::Ambiguous => finish(ctx, job, page_id, "unknown", reason, None).await,
        ErrorClass::RecipientPermanent => {
            sqlx::query("UPDATE subscribers SET status = 'unreachable' WHERE id = $1")
                .bind(job.subscriber_id)
                .execute(&ctx.pool)
                .await?;
            finish(ctx, job, page_id, "failed", reason, None).await
        }
        ErrorClass::PageFatal => {
            let paused = pages::halt(&ctx.pool, page_id, class.as_str()).await?;
            if let Some(campaigns) = &paused {
                metrics::page_halted(page_id);
                tracing::warn!(page_id, ?campaigns, "Page halted; its campaigns are paused");
            }
            // Not sent: this person's message waits with the paused campaign.
            finish(ctx, job, page_id, "retrying", reason, None).await?;
            park(ctx, job, task_id).await
        }
    }
}

/// Holds a job while its campaign is paused (or its Page halted), without spending an attempt.
async fn park(ctx: &SendContext, job: SendJob, task_id: &str) -> anyhow::Result<()> {
    if !queue::park_while_paused(&ctx.pool, task_id, job.campaign_id).await? {
        queue::reschedule(&ctx.pool, task_id, RECHECK, false).await?;
    }
    Ok(())
}

/// Claims the delivery for this attempt; `None` means it was claimed before. A claim still
/// `sending` belongs to an attempt that died mid-send: it may have reached the person, so it is
/// settled as `unknown` and never sent again.
async fn claim(ctx: &SendContext, job: SendJob) -> anyhow::Result<Option<i32>> {
    let attempts: Option<i32> = sqlx::query_scalar(
        "INSERT INTO deliveries (campaign_id, subscriber_id, status, attempts)
         VALUES ($1, $2, 'sending', 1)
         ON CONFLICT (campaign_id, subscriber_id) DO UPDATE
           SET status = 'sending', updated_at = now(),
               attempts = deliveries.attempts
                   + CASE WHEN deliveries.reason = 'rate_limited' THEN 0 ELSE 1 END
           WHERE deliveries.status = 'retrying'
         RETURNING attempts",
    )
    .bind(job.campaign_id)
    .bind(job.subscriber_id)
    .fetch_optional(&ctx.pool)
    .await
    .context("claiming the delivery")?;
    if attempts.is_none() {
        sqlx::query(
            "UPDATE deliveries SET status = 'unknown', reason = 'interrupted', updated_at = now()
             WHERE campaign_id = $1 AND subscriber_id = $2 AND status = 'sending'",
        )
        .bind(job.campaign_id)
        .bind(job.subscriber_id)
        .execute(&ctx.pool)
        .await?;
    }
    Ok(attempts)
}

/// Records a person not messaged and why, unless their delivery already has an outcome.
async fn skip(ctx: &SendContext, job: SendJob, page_id: i64, reason: &str) -> anyhow::Result<()> {
    let recorded = sqlx::query(
        "INSERT INTO deliveries (campaign_id, subscriber_id, status, reason)
         VALUES ($1, $2, 'skipped', $3)
         ON CONFLICT (campaign_id, subscriber_id) DO UPDATE
           SET status = 'skipped', reason = $3, updated_at = now()
           WHERE deliveries.status = 'retrying'",
    )
    .bind(job.campaign_id)
    .bind(job.subscriber_id)
    .bind(reason)
    .execute(&ctx.pool)
    .await?;
    if recorded.rows_affected() == 1 {
        metrics::send_outcome(page_id, "skipped");
    }
    Ok(())
}

/// Writes the outcome of this delivery.
async fn finish(
    ctx: &SendContext,
    job: SendJob,
    page_id: i64,
    status: &str,
    reason: Option<&str>,
    message_id: Option<&str>,
) -> anyhow::Result<()> {
    // Once a message is out, losing its outcome would leave the claim `sending` and the
    // delivery `unknown`: a busy database gets a few more chances first.
    let mut tries = 0;
    loop {
        let written = sqlx::query(
            "UPDATE deliveries SET status = $3, reason = $4, message_id = $5, updated_at = now()
             WHERE campaign_id = $1 AND subscriber_id = $2",
        )
        .bind(job.campaign_id)
        .bind(job.subscriber_id)
        .bind(status)
        .bind(reason)
        .bind(message_id)
        .execute(&ctx.pool)
        .await;
        tries += 1;
        match written {
            Ok(_) => break,
            Err(error) if tries < OUTCOME_WRITE_TRIES => {
                tracing::warn!(campaign_id = job.campaign_id, subscriber_id = job.subscriber_id, %error, "recording the delivery outcome failed; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error).context("recording the delivery outcome"),
        }
    }
    metrics::send_outcome(page_id, status);
    Ok(())
}
