//! The notify job: a one-line service message to a person, such as the confirmation that they
//! are unsubscribed. It is sent as a `RESPONSE` inside the window their own message opened.

use anyhow::Context as _;
use moonengage_core::jobs::{NotifyJob, NotifyKind};
use moonengage_core::pages;
use moonengage_messenger::{ErrorClass, OutgoingMessage};
use moonengage_privacy::crypto::SealedField;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

/// The text of each kind of service message.
fn text(kind: NotifyKind, page_name: &str) -> String {
    match kind {
        NotifyKind::Unsubscribed => {
            format!("You are unsubscribed: {page_name} will send you no more messages.")
        }
    }
}

/// The person and the Page the message goes from.
#[derive(sqlx::FromRow)]
struct Recipient {
    psid: Vec<u8>,
    page_id: i64,
    send_rate: i32,
    page_name: String,
    access_token: Vec<u8>,
}

impl Run<Env> for NotifyJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        notify(env, self).await
    }
}

async fn notify(ctx: &Env, job: NotifyJob) -> Result<(), JobError> {
    let row: Option<Recipient> = sqlx::query_as(
        "SELECT s.psid, p.id AS page_id, p.send_rate, p.name AS page_name, p.access_token
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(job.subscriber_id)
    .fetch_optional(&ctx.pool)
    .await
    .context("loading the recipient")?;
    // Erased since: there is nobody left to tell.
    let Some(Recipient {
        psid,
        page_id,
        send_rate,
        page_name,
        access_token: token,
    }) = row
    else {
        return Ok(());
    };
    let psid = ctx
        .keyring
        .open_string(SealedField::SubscriberPsid, &psid)
        .context("opening the PSID")?;
    let token = pages::open_token(&ctx.keyring, &token).context("opening the Page token")?;
    let text = text(job.kind, &page_name);
    let message = OutgoingMessage {
        psid: &psid,
        text: &text,
        quick_replies: &[],
    };
    crate::service::job_slot(ctx, page_id, send_rate).await?;
    let Err(error) = ctx.client.send(&token, &message).await else {
        return Ok(());
    };
    let class = error.class();
    tracing::debug!(
        subscriber_id = job.subscriber_id,
        class = class.as_str(),
        %error,
        "service message not accepted"
    );
    if matches!(class, ErrorClass::Transient | ErrorClass::RateLimited) {
        return Err(JobError::Retry {
            after: None,
            spend_attempt: true,
            reason: class.as_str().to_owned(),
        });
    }
    Ok(())
}
