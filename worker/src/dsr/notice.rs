//! A service message to the person a request is about, sent as a `RESPONSE` inside their
//! 24-hour window (callers check it): the export link, the confirmation of an erasure.

use anyhow::Context as _;
use moonengage_core::messenger::OutgoingMessage;
use moonengage_core::pages;

use super::DsrContext;

/// Sends `text(page_name)` to `psid` from the Page; true when Facebook accepted it. A refusal
/// (window closed, person unreachable) is logged by class and answered false, since the request
/// is carried out either way; a database or key failure is an `Err`.
pub(super) async fn tell(
    ctx: &DsrContext,
    request_id: i64,
    page_id: i64,
    psid: &str,
    text: impl FnOnce(&str) -> String,
) -> anyhow::Result<bool> {
    let page: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT name, access_token FROM pages WHERE id = $1")
            .bind(page_id)
            .fetch_optional(&ctx.pool)
            .await
            .context("loading the request's Page")?;
    let Some((page_name, token)) = page else {
        return Ok(false);
    };
    let token = pages::open_token(&ctx.keyring, &token)?;
    let text = text(&page_name);
    let message = OutgoingMessage {
        psid,
        text: &text,
        quick_replies: &[],
    };
    match ctx.client.send(&token, &message).await {
        Ok(_) => Ok(true),
        Err(error) => {
            tracing::info!(
                request_id,
                page_id,
                class = error.class().as_str(),
                "request notice not accepted"
            );
            Ok(false)
        }
    }
}
