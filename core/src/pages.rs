//! Facebook Pages a business sends from. The access token is sealed at rest and only opened in
//! memory at the point of use.

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::crypto::{Context, Keyring};

/// A Page to register (or update, when its Facebook id is known already).
#[derive(Debug)]
pub struct NewPage<'a> {
    /// Facebook's id of the Page.
    pub fb_page_id: &'a str,
    /// Display name, used in templates and dashboards.
    pub name: &'a str,
    /// The Page access token Facebook issued.
    pub access_token: &'a SecretString,
    /// Messages per second this Page may send (below Facebook's 300/s).
    pub send_rate: i32,
}

/// Registers a Page or refreshes its name, token and rate; returns its internal id.
pub async fn register(pool: &PgPool, keyring: &Keyring, page: &NewPage<'_>) -> anyhow::Result<i64> {
    let sealed = keyring.seal(
        Context::PageAccessToken,
        page.access_token.expose_secret().as_bytes(),
    );
    sqlx::query_scalar(
        "INSERT INTO pages (fb_page_id, name, access_token, send_rate) VALUES ($1, $2, $3, $4)
         ON CONFLICT (fb_page_id) DO UPDATE
           SET name = EXCLUDED.name, access_token = EXCLUDED.access_token,
               send_rate = EXCLUDED.send_rate
         RETURNING id",
    )
    .bind(page.fb_page_id)
    .bind(page.name)
    .bind(sealed)
    .bind(page.send_rate)
    .fetch_one(pool)
    .await
    .context("registering a Page")
}

/// Opens a sealed Page token; a failure means the keyring lacks the key it was sealed with.
pub fn open_token(keyring: &Keyring, sealed: &[u8]) -> anyhow::Result<SecretString> {
    let token = keyring
        .open_string(Context::PageAccessToken, sealed)
        .context("opening a Page access token")?;
    Ok(SecretString::from(token))
}

/// Halts a Page that Facebook refuses for good (token, permission, block): nothing more is
/// sent from it, and its running campaigns are paused, until an admin resumes it. Admins are
/// e-mailed (once per halt: only the call that halted an active Page reports it). Returns the
/// campaigns it paused, or `None` when the Page was halted already.
pub async fn halt(pool: &PgPool, page_id: i64, reason: &str) -> anyhow::Result<Option<Vec<i64>>> {
    let halted = sqlx::query(
        "UPDATE pages SET status = 'halted', halted_reason = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(page_id)
    .bind(reason)
    .execute(pool)
    .await
    .context("halting a Page")?;
    if halted.rows_affected() == 0 {
        return Ok(None);
    }
    let running: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM campaigns WHERE page_id = $1 AND state IN ('running', 'scheduled')",
    )
    .bind(page_id)
    .fetch_all(pool)
    .await?;
    for campaign in &running {
        crate::campaigns::pause(pool, *campaign).await?;
    }
    crate::notify::admin(
        pool,
        crate::notify::AdminEvent::PageHalted {
            page_id,
            paused_campaigns: running.clone(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    Ok(Some(running))
}

/// Resumes a halted Page (after an admin fixed its token or permissions) and the campaigns its
/// halt paused.
pub async fn resume(pool: &PgPool, page_id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE pages SET status = 'active', halted_reason = NULL WHERE id = $1")
        .bind(page_id)
        .execute(pool)
        .await
        .context("resuming a Page")?;
    let paused: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE page_id = $1 AND state = 'paused'")
            .bind(page_id)
            .fetch_all(pool)
            .await?;
    for campaign in paused {
        crate::campaigns::resume(pool, campaign).await?;
    }
    Ok(())
}

/// Makes every worker hold a rate-limited Page's sends until `seconds` from now.
pub async fn pause_for(pool: &PgPool, page_id: i64, seconds: f64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE pages
         SET paused_until = greatest(coalesce(paused_until, now()), now() + make_interval(secs => $2))
         WHERE id = $1",
    )
    .bind(page_id)
    .bind(seconds)
    .execute(pool)
    .await
    .context("pausing a rate-limited Page")?;
    Ok(())
}

/// A Page as the admin API lists it: no token.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct PageSummary {
    /// Internal id.
    pub id: i64,
    /// Facebook's id of the Page.
    pub fb_page_id: String,
    /// Display name.
    pub name: String,
    /// Messages per second.
    pub send_rate: i32,
    /// `active` or `halted`.
    pub status: String,
    /// Why it was halted.
    pub halted_reason: Option<String>,
    /// When it was registered.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Every registered Page, oldest first.
pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<PageSummary>> {
    sqlx::query_as(
        "SELECT id, fb_page_id, name, send_rate, status, halted_reason, created_at
         FROM pages ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("listing Pages")
}

/// Sets a Page's send rate (messages per second, which the rate limiter reads); `false` when
/// there is no such Page.
pub async fn set_send_rate(pool: &PgPool, page_id: i64, send_rate: i32) -> anyhow::Result<bool> {
    let updated = sqlx::query("UPDATE pages SET send_rate = $2 WHERE id = $1")
        .bind(page_id)
        .bind(send_rate)
        .execute(pool)
        .await
        .context("setting a Page's send rate")?;
    Ok(updated.rows_affected() == 1)
}

/// Facebook's id of a Page (the blind index of its subscribers' PSIDs is keyed by it), or
/// `None` when there is no such Page.
pub async fn fb_page_id(pool: &PgPool, page_id: i64) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT fb_page_id FROM pages WHERE id = $1")
        .bind(page_id)
        .fetch_optional(pool)
        .await
        .context("finding a Page")
}
