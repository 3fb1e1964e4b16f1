//! The e-mail job: tells admins about an event (see `moonengage_core::notify`). The subject and
//! body carry ids, counts and links only — never a PSID, a name or what somebody wrote.
//!
//! An e-mail is never lost: when the SMTP server is down or refuses it, the job moves its own
//! run time back (exponential backoff with jitter, capped at `queue.retry_max_ms`) and keeps
//! trying at that cap for as long as it takes; each failure is logged with the attempt count,
//! which the job row shows too.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use apalis::prelude::{BoxDynError, Data, TaskId};
use chrono::{DateTime, Utc};
use moonengage_core::email::Mailer;
use moonengage_core::notify::AdminEvent;
use moonengage_core::queue;
use moonengage_core::settings::QueueSettings;
use sqlx::PgPool;

/// Shared by every e-mail job of a worker process.
pub struct EmailContext {
    /// The database and its queue.
    pub(crate) pool: PgPool,
    /// The SMTP transport; `None` when admin e-mail is off.
    pub(crate) mailer: Option<Mailer>,
    /// Backoff of retries.
    pub(crate) queue: QueueSettings,
    /// Public URL of the web process, for links to the admin API.
    pub(crate) base_url: Option<String>,
}

/// The apalis handler; an `Err` (database) is retried by the queue, an SMTP failure by moving
/// the run time.
pub async fn handle(
    event: AdminEvent,
    task_id: TaskId,
    ctx: Data<Arc<EmailContext>>,
) -> Result<(), BoxDynError> {
    run(&ctx, &event, &task_id.to_string())
        .await
        .map_err(|error| {
            tracing::warn!(
                event = event.name(),
                error = %format!("{error:#}"),
                "e-mail job failed"
            );
            error.into()
        })
}

async fn run(ctx: &EmailContext, event: &AdminEvent, task_id: &str) -> anyhow::Result<()> {
    let Some(mailer) = &ctx.mailer else {
        tracing::debug!(event = event.name(), "admin e-mail is off; not sent");
        return Ok(());
    };
    let (subject, body) = render(&ctx.pool, event, ctx.base_url.as_deref()).await?;
    let Err(error) = mailer.send(&subject, body).await else {
        tracing::info!(event = event.name(), "admin e-mail sent");
        return Ok(());
    };
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM apalis.jobs WHERE id = $1")
        .bind(task_id)
        .fetch_optional(&ctx.pool)
        .await
        .context("reading the e-mail job's attempts")?
        .unwrap_or(0);
    let delay = queue::backoff(&ctx.queue, attempts.unsigned_abs());
    tracing::warn!(
        event = event.name(),
        attempts = attempts + 1,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        %error,
        "admin e-mail not sent; retrying"
    );
    queue::reschedule(&ctx.pool, task_id, delay, true)
        .await
        .context("rescheduling an e-mail")?;
    Ok(())
}

/// A link to an admin API resource, when the public URL is known.
fn link(base_url: Option<&str>, path: &str) -> String {
    match base_url {
        Some(base) => format!("\n{}{path}\n", base.trim_end_matches('/')),
        None => format!("\nAdmin API: {path}\n"),
    }
}

/// Subject and body of an event, with the counts read now.
async fn render(
    pool: &PgPool,
    event: &AdminEvent,
    base_url: Option<&str>,
) -> anyhow::Result<(String, String)> {
    const TAG: &str = "[MoonEngage]";
    Ok(match event {
        AdminEvent::DsrReceived { request_id }
        | AdminEvent::DsrCompleted { request_id }
        | AdminEvent::DsrDueSoon { request_id } => {
            let row: Option<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT type, channel, status, due_at FROM dsr_requests WHERE id = $1",
            )
            .bind(request_id)
            .fetch_optional(pool)
            .await
            .context("reading a request for an e-mail")?;
            let what = match event {
                AdminEvent::DsrReceived { .. } => "received",
                AdminEvent::DsrCompleted { .. } => "completed",
                _ => "due soon",
            };
            let mut body = format!("Data-subject request #{request_id} {what}.\n");
            if let Some((kind, channel, status, due_at)) = row {
                let _ = write!(
                    body,
                    "\nType: {kind}\nChannel: {channel}\nStatus: {status}\nDue: {}\n",
                    due_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
            body.push_str(&link(base_url, &format!("/api/v1/dsr/{request_id}")));
            let subject = match event {
                AdminEvent::DsrDueSoon { .. } => {
                    format!("{TAG} Data-subject request #{request_id} is due soon")
                }
                _ => format!("{TAG} Data-subject request #{request_id} {what}"),
            };
            (subject, body)
        }
        AdminEvent::PageHalted {
            page_id,
            paused_campaigns,
            ..
        } => {
            let reason: Option<Option<String>> =
                sqlx::query_scalar("SELECT halted_reason FROM pages WHERE id = $1")
                    .bind(page_id)
                    .fetch_optional(pool)
                    .await
                    .context("reading a Page for an e-mail")?;
            let reason = reason.flatten().unwrap_or_else(|| "unknown".into());
            let mut body = format!(
                "Page #{page_id} was halted: Facebook refuses its sends ({reason}). Nothing is \
                 sent from it until its token or permissions are fixed and it is resumed \
                 (POST /api/v1/pages/{page_id}/resume).\n\nCampaigns paused: {}\n",
                paused_campaigns.len()
            );
            for campaign in paused_campaigns {
                let _ = writeln!(body, "  campaign #{campaign}");
            }
            body.push_str(&link(base_url, "/api/v1/pages"));
            (format!("{TAG} Page #{page_id} halted"), body)
        }
        AdminEvent::CampaignCompleted { campaign_id }
        | AdminEvent::CampaignFailed { campaign_id } => {
            let row: Option<(i64, i32, i32, i32, i32, i32)> = sqlx::query_as(
                "SELECT page_id, recipients, sent, skipped, failed, unknown
                 FROM campaigns WHERE id = $1",
            )
            .bind(campaign_id)
            .fetch_optional(pool)
            .await
            .context("reading a campaign for an e-mail")?;
            let failed = matches!(event, AdminEvent::CampaignFailed { .. });
            let mut body = if failed {
                format!("Campaign #{campaign_id} failed: no message could be sent.\n")
            } else {
                format!("Campaign #{campaign_id} completed.\n")
            };
            if let Some((page_id, recipients, sent, skipped, failed, unknown)) = row {
                let _ = write!(
                    body,
                    "\nPage: #{page_id}\nRecipients: {recipients}\nSent: {sent}\n\
                     Skipped: {skipped}\nFailed: {failed}\nUnknown: {unknown}\n"
                );
            }
            body.push_str(&link(base_url, &format!("/api/v1/campaigns/{campaign_id}")));
            let subject = if failed {
                format!("{TAG} Campaign #{campaign_id} failed")
            } else {
                format!("{TAG} Campaign #{campaign_id} completed")
            };
            (subject, body)
        }
    })
}
