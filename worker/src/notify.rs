//! The notify job: a one-line service message to a person, such as the confirmation that they
//! are unsubscribed. It is sent as a `RESPONSE` inside the window their own message opened.

use std::sync::Arc;

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data, TaskId};
use moonengage_core::crypto::Context;
use moonengage_core::messenger::{ErrorClass, OutgoingMessage};
use moonengage_core::pages;
use moonengage_core::queue::{self, NotifyJob, NotifyKind};

use crate::service::ServiceContext;

/// The apalis handler; an `Err` (database, keys) is retried by the queue.
pub async fn handle(
    job: NotifyJob,
    task_id: TaskId,
    ctx: Data<Arc<ServiceContext>>,
) -> Result<(), BoxDynError> {
    run(&ctx, job, &task_id.to_string()).await.map_err(|error| {
        tracing::warn!(
            subscriber_id = job.subscriber_id,
            error = %format!("{error:#}"),
            "notify job failed"
        );
        error.into()
    })
}

/// The text of each kind of service message.
fn text(kind: NotifyKind, page_name: &str) -> String {
    match kind {
        NotifyKind::Unsubscribed => {
            format!("You are unsubscribed: {page_name} will send you no more messages.")
        }
    }
}

async fn run(ctx: &ServiceContext, job: NotifyJob, task_id: &str) -> anyhow::Result<()> {
    let row: Option<(Vec<u8>, String, Vec<u8>)> = sqlx::query_as(
        "SELECT s.psid, p.name, p.access_token
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(job.subscriber_id)
    .fetch_optional(&ctx.pool)
    .await
    .context("loading the recipient")?;
    // Erased since: there is nobody left to tell.
    let Some((psid, page_name, token)) = row else {
        return Ok(());
    };
    let psid = ctx.keyring.open_string(Context::SubscriberPsid, &psid)?;
    let token = pages::open_token(&ctx.keyring, &token)?;
    let text = text(job.kind, &page_name);
    let message = OutgoingMessage {
        psid: &psid,
        text: &text,
        quick_replies: &[],
    };
    let Err(error) = ctx.client.send(&token, &message).await else {
        return Ok(());
    };
    let class = error.class();
    tracing::info!(
        subscriber_id = job.subscriber_id,
        class = class.as_str(),
        %error,
        "service message not accepted"
    );
    if matches!(class, ErrorClass::Transient | ErrorClass::RateLimited) {
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM apalis.jobs WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&ctx.pool)
            .await?
            .unwrap_or(0);
        if attempts < ctx.queue.max_attempts {
            let delay = queue::backoff(&ctx.queue, attempts.unsigned_abs());
            queue::reschedule(&ctx.pool, task_id, delay, true).await?;
        }
    }
    Ok(())
}
