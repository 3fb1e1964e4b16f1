//! The policy-notice job: tells one person of a privacy-policy version, as a `RESPONSE` inside
//! their 24-hour window, at the Page's send rate. The claim on
//! `subscribers.policy_version_notified` makes it once per person and version, however many
//! jobs (publication, replies) race; a send that certainly failed gives the claim back.

use anyhow::Context as _;
use moonengage_core::crypto::Context;
use moonengage_core::messenger::{ErrorClass, OutgoingMessage};
use moonengage_core::pages;
use moonengage_core::policy::{self, PolicyNoticeJob};
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

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

impl Run<Env> for PolicyNoticeJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        notice(env, self).await
    }
}

async fn notice(ctx: &Env, job: PolicyNoticeJob) -> Result<(), JobError> {
    let row: Option<Recipient> = sqlx::query_as(
        "SELECT p.id AS page_id, p.send_rate, p.status AS page_status, p.name AS page_name,
                p.access_token, s.psid
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(job.subscriber_id)
    .fetch_optional(&ctx.pool)
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
    crate::service::job_slot(ctx, page_id, send_rate).await?;
    let Some(claimed) = policy::claim(&ctx.pool, job.subscriber_id, job.policy_version_id).await?
    else {
        return Ok(());
    };
    let psid = ctx
        .keyring
        .open_string(Context::SubscriberPsid, &psid)
        .context("opening the PSID")?;
    let token = pages::open_token(&ctx.keyring, &token).context("opening the Page token")?;
    let first = |words: &[String]| words.first().cloned().unwrap_or_default();
    let text = policy::notice_text(
        &page_name,
        &claimed,
        &first(&ctx.settings.keywords.export),
        &first(&ctx.settings.keywords.erase),
    );
    let message = OutgoingMessage {
        psid: &psid,
        text: &text,
        quick_replies: &[],
    };
    let Err(error) = ctx.client.send(&token, &message).await else {
        tracing::debug!(
            subscriber_id = job.subscriber_id,
            policy_version_id = job.policy_version_id,
            "policy notice sent"
        );
        return Ok(());
    };
    let class = error.class();
    tracing::debug!(
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
        &ctx.pool,
        job.subscriber_id,
        job.policy_version_id,
        claimed.previous,
    )
    .await?;
    crate::service::refused(ctx, class, page_id, job.subscriber_id).await
}
