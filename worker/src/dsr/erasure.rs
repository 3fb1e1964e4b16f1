//! Erasure (GDPR Art. 17): the person is told first (inside their window, once: the message is
//! claimed in its own commit), then every row about them goes, and the request completes, in
//! one transaction.

use anyhow::Context as _;
use moonengage_privacy::crypto::SealedField;
use moonengage_privacy::dsr::Subject;
use moonengage_privacy::requests::{self, Claimed};
use moonengage_privacy::{erasure, subject};

use super::notice::{self, Told};
use super::{NOTHING_HELD, reachable};
use crate::env::Env;

/// Confirms, erases, completes. Someone already gone completes as "nothing held".
pub(super) async fn run(
    ctx: &Env,
    request_id: i64,
    request: &Claimed,
    subject: &Subject,
) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await.context("starting an erasure")?;
    let person = subject::find_person(&mut tx, &ctx.keyring, subject).await?;
    let psid = match &person {
        Some(person) => Some(
            ctx.keyring
                .open_string(SealedField::SubscriberPsid, &person.psid)?,
        ),
        None => subject.psid.clone(),
    };
    let in_window = person.as_ref().is_some_and(|p| p.in_window);
    let sender = notice::sender(&mut *tx, ctx, subject.page_id).await?;
    let told = match (psid.as_deref(), &sender) {
        (Some(psid), Some(sender)) if reachable(request, in_window) => {
            notice::tell(ctx, request_id, sender, psid, |page| {
                format!(
                    "We are erasing all data {page} holds about you. This is our last message \
                     unless you write to us again. Reference: {}.",
                    request.confirmation_code
                )
            })
            .await?
        }
        _ => Told::NotSent,
    };
    let erased =
        erasure::erase(&mut tx, &ctx.keyring, request_id, subject, person.as_ref()).await?;
    let outcome = if erased.nothing_held() {
        NOTHING_HELD.to_owned()
    } else {
        let confirmation = match told {
            Told::Sent => "confirmation sent in Messenger",
            Told::Maybe => "confirmation may have gone in Messenger (no answer came); not repeated",
            Told::NotSent => {
                "confirmation not sent: the person is outside the 24-hour Messenger window"
            }
        };
        format!("{}; {confirmation}", erased.summary())
    };
    requests::complete(&mut tx, request_id, &outcome).await?;
    tx.commit().await.context("committing an erasure")?;
    tracing::debug!(
        request_id,
        subscribers = erased.subscribers,
        deliveries = erased.deliveries,
        jobs = erased.jobs,
        webhook_events = erased.webhook_events,
        exports = erased.exports,
        "erased"
    );
    Ok(())
}
