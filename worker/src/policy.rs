//! The policy-notice job: tells one person of a privacy-policy version, as a `RESPONSE` inside
//! their 24-hour window, at the Page's send rate. The claim on
//! `subscribers.policy_version_notified` makes it once per person and version, however many
//! jobs (publication, replies) race; a send that certainly failed gives the claim back.

use std::sync::Arc;

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data, TaskId};
use moonengage_core::crypto::Context;
use moonengage_core::messenger::{ErrorClass, OutgoingMessage};
use moonengage_core::pages;
use moonengage_core::policy::{self, PolicyNoticeJob};
use moonengage_core::queue;
use moonengage_core::rate_limit::{Permit, RateLimiter};
use moonengage_core::webhook::KeywordSettings;

use crate::service::ServiceContext;

/// What a policy-notice job needs beyond the service context.
pub struct PolicyContext {
    /// Database, keys, Graph API client, retry settings.
    pub(crate) service: Arc<ServiceContext>,
    /// The Page's send rate, shared with campaign sends.
    pub(crate) limiter: Arc<RateLimiter>,
    /// The words a person replies to act on the notice.
    pub(crate) keywords: KeywordSettings,
}

/// The person and the Page a notice goes from.
#[derive(sqlx::FromRow)]
struct Recipient {
    page_id: i64,
    send_rate: i32,
    page_status: String,
    page_name: String,
    access_token: Vec<u8>,
    psid: Vec<u8>,
}

/// The apalis handler; an `Err` (database, keys) is retried by the queue.
pub async fn handle(
    job: PolicyNoticeJob,
    task_id: TaskId,
    ctx: Data<Arc<PolicyContext>>,
) -> Result<(), BoxDynError> {
    run(&ctx, job, &task_id.to_string()).await.map_err(|error| {
        tracing::warn!(
            subscriber_id = job.subscriber_id,
            policy_version_id = job.policy_version_id,
            error = %format!("{error:#}"),
            "policy notice job failed"
        );
        error.into()
    })
}

async fn run(ctx: &PolicyContext, job: PolicyNoticeJob, task_id: &str) -> anyhow::Result<()> {
    let service = &ctx.service;
    let row: Option<Recipient> = sqlx::query_as(
        "SELECT p.id AS page_id, p.send_rate, p.status AS page_status, p.name AS page_name,
                p.access_token, s.psid
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(job.subscriber_id)
    .fetch_optional(&service.pool)
    .await
    .context("loading the recipient")?;
    // Erased since: there is nobody left to tell.
    let Some(Recipient {
        page_id,
        send_rate,
        page_status,
        page_name,
        access_token: token,
        psid,
    }) = row
    else {
        return Ok(());
    };
    if page_status != "active" {
        // A halted Page sends nothing; the person is told with their next reply after it resumes.
        return Ok(());
    }
    match ctx
        .limiter
        .acquire(page_id, u32::try_from(send_rate).unwrap_or(1))
        .await
    {
        Permit::After(wait) => tokio::time::sleep(wait).await,
        Permit::Requeue(wait) => {
            queue::reschedule(&service.pool, task_id, wait, false).await?;
            return Ok(());
        }
    }
    let Some(claimed) =
        policy::claim(&service.pool, job.subscriber_id, job.policy_version_id).await?
    else {
        return Ok(());
    };
    let psid = service
        .keyring
        .open_string(Context::SubscriberPsid, &psid)?;
    let token = pages::open_token(&service.keyring, &token)?;
    let first = |words: &[String]| words.first().cloned().unwrap_or_default();
    let text = policy::notice_text(
        &page_name,
        &claimed,
        &first(&ctx.keywords.export),
        &first(&ctx.keywords.erase),
    );
    let message = OutgoingMessage {
        psid: &psid,
        text: &text,
        quick_replies: &[],
    };
    let Err(error) = service.client.send(&token, &message).await else {
        tracing::info!(
            subscriber_id = job.subscriber_id,
            policy_version_id = job.policy_version_id,
            "policy notice sent"
        );
        return Ok(());
    };
    let class = error.class();
    tracing::info!(
        subscriber_id = job.subscriber_id,
        policy_version_id = job.policy_version_id,
        class = class.as_str(),
        %error,
        "policy notice not accepted"
    );
    if class == ErrorClass::Ambiguous {
        // It may have reached them: keep the claim, never send it twice.
        return Ok(());
    }
    policy::release(
        &service.pool,
        job.subscriber_id,
        job.policy_version_id,
        claimed.previous,
    )
    .await?;
    match class {
        ErrorClass::Transient | ErrorClass::RateLimited => {
            let attempts: i32 =
                sqlx::query_scalar("SELECT attempts FROM apalis.jobs WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&service.pool)
                    .await?
                    .unwrap_or(0);
            // Past the last attempt the person is still told, with their next reply.
            if attempts < service.queue.max_attempts {
                let delay = queue::backoff(&service.queue, attempts.unsigned_abs());
                queue::reschedule(&service.pool, task_id, delay, true).await?;
            }
        }
        ErrorClass::PageFatal => {
            pages::halt(&service.pool, page_id, class.as_str()).await?;
        }
        ErrorClass::RecipientPermanent => {
            sqlx::query("UPDATE subscribers SET status = 'unreachable' WHERE id = $1")
                .bind(job.subscriber_id)
                .execute(&service.pool)
                .await?;
        }
        // Window closed or another refusal: told with their next reply.
        _ => {}
    }
    Ok(())
}
