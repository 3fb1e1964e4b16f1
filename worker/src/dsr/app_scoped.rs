//! Facebook's data-deletion callback names the person by an app-scoped id, while every row of
//! ours is keyed by Page-scoped ids: the ID Matching API maps one to the others, and an erasure
//! request is filed (queued, the usual path) for each Page of ours the person talks to. The
//! callback's request completes with what was filed; "nothing held" only when Facebook maps the
//! id to nobody.

use anyhow::Context as _;
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_privacy::requests;

use super::NOTHING_HELD;
use crate::env::Env;

/// Maps the id, files the erasures and completes the callback's request, in one transaction (a
/// run again after a failure files nothing twice: the request is completed with them).
pub(super) async fn run(ctx: &Env, request_id: i64, app_scoped_id: &str) -> anyhow::Result<()> {
    let ids = ctx
        .client
        .ids_for_pages(app_scoped_id)
        .await
        .context("mapping an app-scoped id to Page-scoped ids")?;
    let mut tx = ctx
        .pool
        .begin()
        .await
        .context("starting a mapped erasure")?;
    let mut filed = Vec::new();
    let mut elsewhere = 0;
    for id in &ids {
        let page_id: Option<i64> = sqlx::query_scalar("SELECT id FROM pages WHERE fb_page_id = $1")
            .bind(&id.page.id)
            .fetch_optional(&mut *tx)
            .await
            .context("finding a mapped Page")?;
        let Some(page_id) = page_id else {
            elsewhere += 1;
            continue;
        };
        let subject = Subject {
            page_id,
            subscriber_id: None,
            psid: Some(id.psid.clone()),
        };
        let request = dsr::file(
            &mut tx,
            &ctx.keyring,
            DsrType::Erasure,
            Channel::FacebookCallback,
            &subject,
            ctx.settings.queue.max_attempts,
        )
        .await?;
        filed.push(format!("#{}", request.id));
    }
    let outcome = if ids.is_empty() {
        NOTHING_HELD.to_owned()
    } else {
        format!(
            "mapped to {} Page-scoped ids; erasure requests filed: {}; {elsewhere} on Pages not \
             registered here",
            ids.len(),
            if filed.is_empty() {
                "none".to_owned()
            } else {
                filed.join(", ")
            }
        )
    };
    requests::complete(&mut tx, request_id, &outcome).await?;
    tx.commit().await.context("committing a mapped erasure")?;
    tracing::info!(
        request_id,
        mapped = ids.len(),
        filed = filed.len(),
        "data-deletion callback mapped"
    );
    Ok(())
}
