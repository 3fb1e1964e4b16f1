//! The profile job: fetches the first name of a person who opted in from the User Profile API,
//! at their Page's rate (the limiter sends use), and stores it sealed. Retried with backoff
//! while Facebook or the network fails; a refusal about the person (unreachable, no such user)
//! or the message ends it for good: templates then use their fallback.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::pages::{self, PageStatus};
use moonengage_core::profile::ProfileJob;
use moonengage_core::subscribers;
use moonengage_messenger::limiter::Permit;
use moonengage_messenger::{ErrorClass, SendError};
use moonengage_ops::metrics;
use moonengage_privacy::crypto::SealedField;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

/// How long a job waits before looking again at a halted Page.
const HALTED_PAGE_RECHECK: Duration = Duration::from_secs(300);

/// The person and the Page whose token asks for their profile.
#[derive(sqlx::FromRow)]
struct Lookup {
    page_id: i64,
    send_rate: i32,
    page_status: PageStatus,
    /// Seconds the Page stays paused after a rate limit (0 when it is not).
    paused_for: f64,
    access_token: Vec<u8>,
    psid: Vec<u8>,
}

impl Run<Env> for ProfileJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        fetch(env, self.subscriber_id).await
    }
}

async fn fetch(ctx: &Env, subscriber_id: i64) -> Result<(), JobError> {
    let row: Option<Lookup> = sqlx::query_as(
        "SELECT p.id AS page_id, p.send_rate, p.status AS page_status,
                greatest(0, extract(epoch FROM p.paused_until - now()))::float8 AS paused_for,
                p.access_token, s.psid
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(subscriber_id)
    .fetch_optional(&ctx.pool)
    .await
    .context("loading the person to look up")?;
    // Erased since: there is nobody to name.
    let Some(person) = row else {
        return Ok(());
    };
    if person.page_status != PageStatus::Active {
        return Err(JobError::defer(HALTED_PAGE_RECHECK, "page_halted"));
    }
    if person.paused_for > 0.0 {
        return Err(JobError::defer(
            Duration::from_secs_f64(person.paused_for),
            "page_paused",
        ));
    }
    match ctx
        .limiter
        .acquire(person.page_id, u32::try_from(person.send_rate).unwrap_or(1))
        .await
    {
        Permit::After(wait) => tokio::time::sleep(wait).await,
        Permit::Requeue(wait) => return Err(JobError::defer(wait, "rate_limiter")),
    }
    let psid = ctx
        .keyring
        .open_string(SealedField::SubscriberPsid, &person.psid)
        .context("opening the PSID")?;
    let token =
        pages::open_token(&ctx.keyring, &person.access_token).context("opening the Page token")?;
    match ctx.client.profile(&token, &psid).await {
        Ok(profile) => {
            if let Some(name) = profile.first_name.filter(|name| !name.trim().is_empty()) {
                subscribers::set_first_name(&ctx.pool, &ctx.keyring, subscriber_id, name.trim())
                    .await?;
            }
            Ok(())
        }
        Err(error) => refused(ctx, person.page_id, &error).await,
    }
}

/// What a refused look-up means: try again later, or give up on this person's name.
async fn refused(ctx: &Env, page_id: i64, error: &SendError) -> Result<(), JobError> {
    let class = error.class();
    tracing::debug!(page_id, class = class.as_str(), %error, "profile look-up refused");
    let reason = class.as_str().to_owned();
    match class {
        // A read: an answer that never came is safe to ask for again.
        ErrorClass::Transient | ErrorClass::Ambiguous => Err(JobError::Retry {
            after: None,
            spend_attempt: true,
            reason,
        }),
        ErrorClass::RateLimited => {
            let pause = error.pause(Duration::from_secs(ctx.settings.rate_limit.pause_secs));
            pages::pause_for(&ctx.pool, page_id, pause.as_secs_f64()).await?;
            metrics::page_paused(page_id);
            Err(JobError::defer(pause, &reason))
        }
        // Sends decide what a Page-level refusal means for the Page; this name never comes.
        ErrorClass::RecipientPermanent
        | ErrorClass::WindowClosed
        | ErrorClass::PageFatal
        | ErrorClass::Permanent => Err(JobError::Fatal(reason)),
    }
}
