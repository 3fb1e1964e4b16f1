//! The e-mail job: tells admins about an event (see `moonengage_ops::alerts`). The subject and
//! body carry ids, counts and links only — never a PSID, a name or what somebody wrote.
//!
//! An e-mail is never lost: when the SMTP server is down or refuses it, the job moves its own
//! run time back (exponential backoff with jitter, capped at `queue.retry_max_ms`) and keeps
//! trying at that cap for as long as it takes; each failure is logged with the attempt count,
//! which the job row shows too.

use std::fmt::Write as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_ops::alerts::AdminEvent;
use moonengage_privacy::incidents;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;

impl Run<Env> for AdminEvent {
    /// Admin e-mails are rare; a few at once is plenty and spares the SMTP server a burst.
    const CONCURRENCY: Option<usize> = Some(4);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        let Some(mailer) = env.mailer.as_ref().filter(|m| m.has_admins()) else {
            tracing::debug!(event = self.name(), "admin e-mail is off; not sent");
            return Ok(());
        };
        let (subject, body) = render(&env.pool, &self, &env.public_base_url).await?;
        match mailer.send(&subject, body).await {
            Ok(()) => {
                tracing::info!(event = self.name(), "admin e-mail sent");
                Ok(())
            }
            Err(error) => Err(JobError::Retry {
                after: None,
                spend_attempt: true,
                reason: format!("smtp: {error}"),
            }),
        }
    }
}

/// A link to an admin API resource at the deployment's public URL.
fn link(base_url: &str, path: &str) -> String {
    format!("\n{base_url}{path}\n")
}

/// Subject and body of an event, with the counts read now.
async fn render(
    pool: &PgPool,
    event: &AdminEvent,
    base_url: &str,
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
        AdminEvent::IncidentDeclared { incident_id }
        | AdminEvent::IncidentDeadlineNear { incident_id } => {
            let incident = incidents::get(pool, *incident_id).await?;
            let near = matches!(event, AdminEvent::IncidentDeadlineNear { .. });
            let mut body = if near {
                format!(
                    "Incident #{incident_id} is not reported yet and its 72 hours to inform the \
                     supervisory authority are nearly over.\n"
                )
            } else {
                format!(
                    "Incident #{incident_id} was declared: a personal-data breach. The \
                     supervisory authority must be informed within 72 hours of its detection.\n"
                )
            };
            if let Some(i) = incident {
                let categories: Vec<&str> = i.categories.iter().map(|c| c.as_str()).collect();
                let _ = write!(
                    body,
                    "\nDetected: {}\nReport by: {}\nStatus: {}\nCategories: {}\n\
                     People affected: {}\n",
                    i.detected_at.format("%Y-%m-%d %H:%M UTC"),
                    i.report_deadline.format("%Y-%m-%d %H:%M UTC"),
                    i.status.as_str(),
                    categories.join(", "),
                    i.people_affected
                );
            }
            body.push_str(&link(base_url, &format!("/api/v1/incidents/{incident_id}")));
            let subject = if near {
                format!("{TAG} Incident #{incident_id}: report deadline near")
            } else {
                format!("{TAG} Incident #{incident_id} declared")
            };
            (subject, body)
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
