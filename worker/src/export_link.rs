//! The export-link job: sends the link of an export that waited for the person (or that an
//! admin re-issued) as a `RESPONSE` inside their 24-hour window, at the Page's send rate. Each
//! send claims the link and gives the export a new one, so only the link last sent works; a
//! send that certainly failed makes it wait again.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use moonengage_core::pages::PageStatus;
use moonengage_privacy::export_link::{self, ExportLinkJob};
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

/// The message that carries an export's link.
pub(crate) fn text(
    env: &Env,
    page_name: &str,
    token: &str,
    expires_at: DateTime<Utc>,
    confirmation_code: &str,
) -> String {
    format!(
        "Your copy of the data {page_name} holds about you is ready: {}/exports/{token}\n\
         The link works once, until {}. Reference: {confirmation_code}.",
        env.public_base_url,
        expires_at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The waiting export's person and Page.
#[derive(sqlx::FromRow)]
struct Waiting {
    subscriber_id: i64,
    page_id: i64,
    send_rate: i32,
    page_status: PageStatus,
    page_name: String,
    access_token: Vec<u8>,
    psid: Vec<u8>,
    in_window: bool,
    confirmation_code: String,
}

impl Run<Env> for ExportLinkJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        deliver(env, self.request_id).await
    }
}

async fn deliver(env: &Env, request_id: i64) -> Result<(), JobError> {
    let waiting: Option<Waiting> = sqlx::query_as(
        "SELECT s.id AS subscriber_id, p.id AS page_id, p.send_rate, p.status AS page_status,
                p.name AS page_name, p.access_token, s.psid,
                in_messaging_window(s.last_interaction_at) AS in_window,
                d.confirmation_code
         FROM exports e
         JOIN subscribers s ON s.id = e.subscriber_id
         JOIN pages p ON p.id = s.page_id
         JOIN dsr_requests d ON d.id = e.dsr_request_id
         WHERE e.dsr_request_id = $1 AND e.link_waiting AND e.expires_at > now()",
    )
    .bind(request_id)
    .fetch_optional(&env.pool)
    .await
    .context("loading a waiting export link")?;
    // Sent already, downloaded, expired or erased: nothing to do.
    let Some(waiting) = waiting else {
        return Ok(());
    };
    if !waiting.in_window || waiting.page_status != PageStatus::Active {
        // It goes with the reply to their next message (after the Page is resumed).
        return Ok(());
    }
    crate::service::job_slot(env, waiting.page_id, waiting.send_rate).await?;
    let Some(link) = export_link::claim(&env.pool, request_id).await? else {
        return Ok(());
    };
    let text = text(
        env,
        &waiting.page_name,
        &link.token,
        link.expires_at,
        &waiting.confirmation_code,
    );
    let Some(class) = crate::service::send_claimed(
        env,
        waiting.page_id,
        &waiting.psid,
        &waiting.access_token,
        &text,
    )
    .await?
    else {
        return Ok(());
    };
    // It certainly did not reach them: it waits again.
    export_link::wait(&env.pool, request_id).await?;
    crate::service::refused(env, class, waiting.page_id, waiting.subscriber_id).await
}
