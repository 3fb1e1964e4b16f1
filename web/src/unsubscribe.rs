//! `/u/{token}`: the unsubscribe link of every message. `GET` shows a confirmation page (a plain
//! HTML form: no JavaScript, no cookies); `POST` unsubscribes, idempotently, and also serves
//! one-click clients that post without showing the page first.

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use moonengage_core::subscribers::{self, SubscriberStatus, Unsubscribed, Via};
use moonengage_privacy::unsubscribe::UnsubscribeClaims;

use crate::error::ApiError;
use crate::state::AppState;

/// Shows the confirmation form, or says the person is unsubscribed (or erased) already.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Some(claims) = verified(&state, &token) else {
        return Ok(invalid_link());
    };
    let status = subscribers::status(&state.pool, claims.subscriber_id, claims.page_id).await?;
    Ok(match status {
        None => nothing_left(),
        Some(SubscriberStatus::Unsubscribed) => done(),
        Some(_) => page(
            StatusCode::OK,
            "Unsubscribe?",
            &format!(
                "<p>You will receive no more messages from this Page.</p>\
                 <form method=\"post\" action=\"/u/{token}\">\
                 <button type=\"submit\">Unsubscribe</button></form>"
            ),
        ),
    })
}

/// Unsubscribes; posting twice is harmless.
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let Some(claims) = verified(&state, &token) else {
        return Ok(invalid_link());
    };
    let mut conn = state
        .pool
        .acquire()
        .await
        .context("connecting to unsubscribe")?;
    let max_attempts = state.settings.queue.max_attempts;
    match subscribers::unsubscribe(
        &mut conn,
        claims.subscriber_id,
        claims.page_id,
        Via::Link,
        max_attempts,
    )
    .await?
    {
        Unsubscribed::Done => Ok(done()),
        Unsubscribed::Gone => Ok(nothing_left()),
    }
}

/// The claims of a token we signed; the path is only used in the form once it verified, so
/// nothing the caller wrote is reflected unchecked.
fn verified(state: &AppState, token: &str) -> Option<UnsubscribeClaims> {
    state
        .signer
        .verify(token)
        .inspect_err(|error| tracing::info!(%error, "unsubscribe link refused"))
        .ok()
}

fn invalid_link() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "<p>This unsubscribe link is damaged or was not issued by us. Use the link or the \
         Unsubscribe button of a message you received, or write STOP in the conversation.</p>",
    )
}

fn done() -> Response {
    page(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>You will receive no more messages from this Page.</p>",
    )
}

fn nothing_left() -> Response {
    page(
        StatusCode::OK,
        "Nothing left to unsubscribe",
        "<p>We hold no data about you for this Page any more, so there is nothing to \
         unsubscribe from.</p>",
    )
}

/// A complete, self-contained page; never cached, since it reflects a person's status.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;\
         margin:3rem auto;padding:0 1rem;line-height:1.5}}button{{font-size:1rem;\
         padding:.5rem 1.25rem}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}
