//! What every notice owed to one person shares (unsubscribe confirmations, privacy-policy
//! updates, incident notices): sent as a `RESPONSE` inside their 24-hour window, at the Page's
//! send rate, once. The notice's claim makes it once per person however many jobs (the
//! decision, their replies, a run repeated after its worker died) race; a send that certainly
//! failed gives the claim back, so a retry or their next reply can tell them.

use std::future::Future;

use anyhow::Context as _;
use moonengage_core::pages::PageStatus;
use moonengage_queue::JobError;
use sqlx::PgPool;

use crate::env::Env;

/// A notice owed to one person: how to claim it, give it back, and word it.
pub(crate) trait Notice: Send + Sync {
    /// What the claim read to word the notice.
    type Claimed: Send;

    /// The person.
    fn subscriber_id(&self) -> i64;

    /// Claims the right to tell them now; `None` when there is nothing to send.
    fn claim(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = anyhow::Result<Option<Self::Claimed>>> + Send;

    /// Gives the claim back after a send that certainly did not reach them.
    fn release(
        &self,
        pool: &PgPool,
        claimed: &Self::Claimed,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The text, from the Page's name, the claim and the keywords that act on one's data.
    fn text(&self, page_name: &str, claimed: &Self::Claimed, export: &str, erase: &str) -> String;
}

/// The person and the Page a notice goes from.
#[derive(sqlx::FromRow)]
struct Recipient {
    page_id: i64,
    send_rate: i32,
    page_status: PageStatus,
    page_name: String,
    access_token: Vec<u8>,
    psid: Vec<u8>,
}

/// Sends a notice if it is still owed and the person is inside their window.
pub(crate) async fn deliver<N: Notice>(ctx: &Env, notice: &N) -> Result<(), JobError> {
    let subscriber_id = notice.subscriber_id();
    let row: Option<Recipient> = sqlx::query_as(
        "SELECT p.id AS page_id, p.send_rate, p.status AS page_status, p.name AS page_name,
                p.access_token, s.psid
         FROM subscribers s JOIN pages p ON p.id = s.page_id WHERE s.id = $1",
    )
    .bind(subscriber_id)
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
    if page_status != PageStatus::Active {
        // A halted Page sends nothing; the person is told with their next reply after it resumes.
        return Ok(());
    }
    crate::service::job_slot(ctx, page_id, send_rate).await?;
    let Some(claimed) = notice.claim(&ctx.pool).await? else {
        return Ok(());
    };
    let first = |words: &[String]| words.first().cloned().unwrap_or_default();
    let text = notice.text(
        &page_name,
        &claimed,
        &first(&ctx.settings.keywords.export),
        &first(&ctx.settings.keywords.erase),
    );
    let Some(class) = crate::service::send_claimed(ctx, page_id, &psid, &token, &text).await?
    else {
        return Ok(());
    };
    notice.release(&ctx.pool, &claimed).await?;
    crate::service::refused(ctx, class, page_id, subscriber_id).await
}
