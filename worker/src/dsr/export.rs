//! Export (GDPR Art. 15/20): everything held about the person as JSON, sealed, behind a link
//! that works once and expires; the person gets the link in Messenger when their window is open,
//! else with the reply to their next message.

use anyhow::Context as _;
use moonengage_privacy::crypto::SealedField;
use moonengage_privacy::dsr::Subject;
use moonengage_privacy::export_link as link;
use moonengage_privacy::requests::{self, Claimed};
use moonengage_privacy::{exports, subject, subject_data};

use super::notice::{self, Told};
use super::{NOTHING_HELD, reachable};
use crate::env::Env;
use crate::export_link;

/// Builds and stores the export, commits it (so the link works when it arrives), tells the
/// person, then completes the request. Run again, it replaces the export with a fresh link.
pub(super) async fn run(
    ctx: &Env,
    request_id: i64,
    request: &Claimed,
    subject: &Subject,
) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await.context("starting an export")?;
    let sender = notice::sender(&mut *tx, ctx, subject.page_id).await?;
    let Some(person) = subject::find_person(&mut tx, &ctx.keyring, subject).await? else {
        if let (Some(psid), Some(sender), true) =
            (subject.psid.as_deref(), &sender, reachable(request, false))
        {
            notice::tell(ctx, request_id, sender, psid, |page| {
                format!(
                    "{page} holds no data about you, so there is nothing to export. \
                     Reference: {}.",
                    request.confirmation_code
                )
            })
            .await?;
        }
        requests::complete(&mut tx, request_id, NOTHING_HELD).await?;
        tx.commit().await.context("committing an empty export")?;
        return Ok(());
    };
    let export = subject_data::collect(&mut tx, &ctx.keyring, &person).await?;
    let json = serde_json::to_vec_pretty(&export).context("encoding an export")?;
    let created = exports::store(
        &mut *tx,
        &ctx.keyring,
        request_id,
        person.subscriber_id,
        &json,
        ctx.settings.privacy.export_ttl_days,
    )
    .await?;
    tx.commit().await.context("committing an export")?;

    let expires = created.expires_at.format("%Y-%m-%d %H:%M UTC");
    let told = if let (Some(sender), true) = (&sender, reachable(request, person.in_window)) {
        let psid = ctx
            .keyring
            .open_string(SealedField::SubscriberPsid, &person.psid)?;
        notice::tell(ctx, request_id, sender, &psid, |page| {
            export_link::text(
                ctx,
                page,
                &created.token,
                created.expires_at,
                &request.confirmation_code,
            )
        })
        .await?
    } else {
        Told::NotSent
    };
    let mut tx = ctx.pool.begin().await.context("completing an export")?;
    // A link that may have gone (or went with an export a repeated run has since replaced)
    // waits for the person's next message too, which brings the live one.
    let link = match told {
        Told::Sent => "link sent in Messenger",
        Told::Maybe => {
            "link may have gone in Messenger (no answer came); it waits for the person's next \
             message too"
        }
        Told::NotSent => {
            "link waiting for the person's next message (outside the 24-hour Messenger window)"
        }
    };
    if told != Told::Sent {
        link::wait(&mut *tx, request_id).await?;
    }
    let outcome = format!("export ready until {expires}; {link}");
    requests::complete(&mut tx, request_id, &outcome).await?;
    tx.commit()
        .await
        .context("committing an export's completion")?;
    Ok(())
}
