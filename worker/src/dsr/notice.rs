//! A service message to the person a request is about, sent as a `RESPONSE` inside their
//! 24-hour window (callers check it): the export link, the confirmation of an erasure.

use anyhow::Context as _;
use moonengage_core::pages;
use moonengage_messenger::ErrorClass;
use moonengage_privacy::requests;
use secrecy::SecretString;
use sqlx::PgExecutor;

use crate::env::Env;

/// The Page a notice is sent as.
pub(super) struct Sender {
    page_id: i64,
    send_rate: i32,
    name: String,
    token: SecretString,
}

/// Loads the Page (read on the caller's connection: an erasure holds its transaction open
/// while it tells the person, and must not need a second connection for it).
pub(super) async fn sender(
    executor: impl PgExecutor<'_>,
    ctx: &Env,
    page_id: i64,
) -> anyhow::Result<Option<Sender>> {
    let page: Option<(i32, String, Vec<u8>)> =
        sqlx::query_as("SELECT send_rate, name, access_token FROM pages WHERE id = $1")
            .bind(page_id)
            .fetch_optional(executor)
            .await
            .context("loading the request's Page")?;
    page.map(|(send_rate, name, token)| {
        Ok(Sender {
            page_id,
            send_rate,
            name,
            token: pages::open_token(&ctx.keyring, &token)?,
        })
    })
    .transpose()
}

/// What came of telling the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Told {
    /// Facebook accepted the message.
    Sent,
    /// It certainly did not reach them (window closed, person unreachable, an error).
    NotSent,
    /// It may have: its answer never came, or an earlier run of the request claimed it and
    /// was cut off. It is not sent again.
    Maybe,
}

/// Sends `text(page_name)` to `psid` at the Page's rate, once per request: the message is
/// claimed (`requests::claim_notice`, committed on its own, so on a connection of the pool's
/// beside the caller's transaction) before it goes, and given back only when it certainly did
/// not. A refusal is only counted, since the request is carried out either way.
pub(super) async fn tell(
    ctx: &Env,
    request_id: i64,
    sender: &Sender,
    psid: &str,
    text: impl FnOnce(&str) -> String,
) -> anyhow::Result<Told> {
    if !requests::claim_notice(&ctx.pool, request_id).await? {
        return Ok(Told::Maybe);
    }
    let text = text(&sender.name);
    crate::service::wait_slot(ctx, sender.page_id, sender.send_rate).await;
    match crate::service::send(ctx, sender.page_id, psid, &sender.token, &text).await {
        Ok(()) => Ok(Told::Sent),
        Err(ErrorClass::Ambiguous) => Ok(Told::Maybe),
        Err(_) => {
            requests::release_notice(&ctx.pool, request_id).await?;
            Ok(Told::NotSent)
        }
    }
}
