//! Service messages (unsubscribe confirmations, request notices, export links, policy notices)
//! share their Page's send rate with its campaigns: each takes a slot of the per-Page limiter
//! before it goes, so a wave of STOPs or requests cannot push a Page past Facebook's limit.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::{pages, subscribers};
use moonengage_messenger::limiter::Permit;
use moonengage_messenger::{ErrorClass, OutgoingMessage};
use moonengage_ops::metrics;
use moonengage_privacy::crypto::SealedField;
use moonengage_queue::JobError;
use secrecy::SecretString;

use crate::env::Env;

/// Waits for the Page's next send slot; `Err(wait)` when the Page is booked for longer than
/// `rate_limit.max_wait_ms`, and the message should go after `wait`.
pub(crate) async fn slot(env: &Env, page_id: i64, send_rate: i32) -> Result<(), Duration> {
    match env
        .limiter
        .acquire(page_id, u32::try_from(send_rate).unwrap_or(1))
        .await
    {
        Permit::After(wait) => {
            tokio::time::sleep(wait).await;
            metrics::rate_limiter_wait(page_id, wait);
            Ok(())
        }
        Permit::Requeue(wait) => Err(wait),
    }
}

/// [`slot`] for a job: a saturated Page puts the job back for later, spending no attempt.
pub(crate) async fn job_slot(env: &Env, page_id: i64, send_rate: i32) -> Result<(), JobError> {
    slot(env, page_id, send_rate)
        .await
        .map_err(|wait| JobError::defer(wait, "rate_limiter"))
}

/// [`slot`] for a caller that cannot put its work back (a request carried out in one
/// transaction): it waits as long as the Page is booked.
pub(crate) async fn wait_slot(env: &Env, page_id: i64, send_rate: i32) {
    while let Err(wait) = slot(env, page_id, send_rate).await {
        tokio::time::sleep(wait).await;
    }
}

/// Sends a claimed service message to one person (PSID and Page token sealed, as stored).
/// `None` when it went, or may have: an answer that never came keeps the claim, so it is never
/// sent twice. `Some(class)` when Facebook certainly refused it: the caller gives its claim back,
/// then [`refused`] says what the refusal means.
pub(crate) async fn send_claimed(
    env: &Env,
    page_id: i64,
    sealed_psid: &[u8],
    sealed_token: &[u8],
    text: &str,
) -> anyhow::Result<Option<ErrorClass>> {
    let psid = env
        .keyring
        .open_string(SealedField::SubscriberPsid, sealed_psid)
        .context("opening the PSID")?;
    let token = pages::open_token(&env.keyring, sealed_token).context("opening the Page token")?;
    let refused = send(env, page_id, &psid, &token, text).await.err();
    Ok(refused.filter(|class| *class != ErrorClass::Ambiguous))
}

/// Sends a service message to one person and counts a refusal by class; `Err(class)` says how
/// it was refused (`Ambiguous`: the answer never came, so it may have gone).
pub(crate) async fn send(
    env: &Env,
    page_id: i64,
    psid: &str,
    token: &SecretString,
    text: &str,
) -> Result<(), ErrorClass> {
    let message = OutgoingMessage {
        psid,
        text,
        quick_replies: &[],
    };
    let Err(error) = env.client.send(token, &message).await else {
        tracing::debug!(page_id, "service message sent");
        return Ok(());
    };
    let class = error.class();
    metrics::send_error(page_id, class.as_str());
    tracing::debug!(page_id, class = class.as_str(), %error, "service message not accepted");
    Err(class)
}

/// What a service message that Facebook certainly refused means: a transient error or a rate
/// limit is retried (past the last attempt the person is still told, with their next reply);
/// a Page refused for good is halted; a person who cannot be reached is marked so. A closed
/// window or any other refusal waits for the person's next message.
pub(crate) async fn refused(
    env: &Env,
    class: ErrorClass,
    page_id: i64,
    subscriber_id: i64,
) -> Result<(), JobError> {
    match class {
        ErrorClass::Transient | ErrorClass::RateLimited => Err(JobError::Retry {
            after: None,
            spend_attempt: true,
            reason: class.as_str().to_owned(),
        }),
        ErrorClass::PageFatal => {
            pages::halt(&env.pool, page_id, class.as_str()).await?;
            Ok(())
        }
        ErrorClass::RecipientPermanent => {
            subscribers::mark_unreachable(&env.pool, subscriber_id).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}
