//! Objection (GDPR Art. 21): the person is unsubscribed from every campaign of the Page — the
//! same effect as STOP: their queued sends are skipped — and told so inside their window. Unlike
//! a STOP, their next message to the Page is a new opt-in. `subscribers::unsubscribe` queues
//! the confirmation when they are inside their window.

use anyhow::Context as _;
use moonengage_core::subscribers::{self, Via};
use moonengage_privacy::dsr::Subject;
use moonengage_privacy::{requests, subject};

use super::NOTHING_HELD;
use crate::env::Env;

/// Outcome of an objection carried out.
const UNSUBSCRIBED: &str = "unsubscribed from every campaign of the Page";

/// Unsubscribes, queues the confirmation, completes; each step is idempotent.
pub(super) async fn run(ctx: &Env, request_id: i64, subject: &Subject) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await.context("starting an objection")?;
    let person = subject::find_person(&mut tx, &ctx.keyring, subject).await?;
    let outcome = match person {
        None => NOTHING_HELD,
        Some(person) => {
            subscribers::unsubscribe(
                &mut tx,
                person.subscriber_id,
                person.page_id,
                Via::Objection(request_id),
                ctx.settings.queue.max_attempts,
            )
            .await?;
            UNSUBSCRIBED
        }
    };
    requests::complete(&mut tx, request_id, outcome).await?;
    tx.commit().await.context("committing an objection")?;
    Ok(())
}
