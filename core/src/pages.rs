//! Facebook Pages a business sends from. The access token is sealed at rest and only opened in
//! memory at the point of use.

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use moonengage_privacy::crypto::{Keyring, SealedField};

/// Whether a Page may send (`pages.status`; the SQL of this crate and the queue names the same
/// values). A halted Page sends nothing until an admin resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PageStatus {
    /// Sending.
    Active,
    /// Facebook refused the Page for good (token, permissions, restriction): nothing is sent
    /// from it and its campaigns are paused.
    Halted,
}

impl PageStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PageStatus::Active => "active",
            PageStatus::Halted => "halted",
        }
    }
}

impl std::str::FromStr for PageStatus {
    type Err = anyhow::Error;

    /// Reads a status a query returned as text (the queue's claim).
    fn from_str(value: &str) -> anyhow::Result<PageStatus> {
        let all = [PageStatus::Active, PageStatus::Halted];
        crate::stored::parse(&all, PageStatus::as_str, "Page status", value)
    }
}

/// Facebook's limit of messages per second per Page: no Page is ever set faster.
pub const MAX_SEND_RATE: i32 = 300;

/// The rate of a Page registered without one: below Facebook's limit, leaving room for the
/// Page's own replies.
pub const DEFAULT_SEND_RATE: i32 = 250;

/// A send rate outside 1 to [`MAX_SEND_RATE`].
#[derive(Debug, thiserror::Error)]
#[error(
    "send_rate must be between 1 and {MAX_SEND_RATE} messages per second (Facebook's limit per \
     Page), not {0}"
)]
pub struct InvalidSendRate(pub i32);

/// Checks a Page's send rate against Facebook's limit.
pub fn check_send_rate(rate: i32) -> Result<i32, InvalidSendRate> {
    if (1..=MAX_SEND_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(InvalidSendRate(rate))
    }
}

/// A Page to register (or update, when its Facebook id is known already).
#[derive(Debug)]
pub struct NewPage<'a> {
    /// The workspace that owns it.
    pub workspace_id: i64,
    /// Facebook's id of the Page.
    pub fb_page_id: &'a str,
    /// Display name, used in templates and dashboards.
    pub name: &'a str,
    /// The Page access token Facebook issued.
    pub access_token: &'a SecretString,
    /// Messages per second this Page may send (at most [`MAX_SEND_RATE`]).
    pub send_rate: i32,
}

/// A Facebook Page can be connected to one workspace only.
#[derive(Debug, thiserror::Error)]
#[error("this Facebook Page is connected to another workspace")]
pub struct PageTaken;

/// Registers a Page or refreshes its name, token and rate; returns its internal id. A Page
/// another workspace has connected is refused with [`PageTaken`] (and left as it is).
pub async fn register(pool: &PgPool, keyring: &Keyring, page: &NewPage<'_>) -> anyhow::Result<i64> {
    check_send_rate(page.send_rate)?;
    let sealed = keyring.seal(
        SealedField::PageAccessToken,
        page.access_token.expose_secret().as_bytes(),
    );
    sqlx::query_scalar(
        "INSERT INTO pages (workspace_id, fb_page_id, name, access_token, send_rate)
         VALUES ($5, $1, $2, $3, $4)
         ON CONFLICT (fb_page_id) DO UPDATE
           SET name = EXCLUDED.name, access_token = EXCLUDED.access_token,
               send_rate = EXCLUDED.send_rate
           WHERE pages.workspace_id = EXCLUDED.workspace_id
         RETURNING id",
    )
    .bind(page.fb_page_id)
    .bind(page.name)
    .bind(sealed)
    .bind(page.send_rate)
    .bind(page.workspace_id)
    .fetch_optional(pool)
    .await
    .context("registering a Page")?
    .ok_or_else(|| PageTaken.into())
}

/// Opens a sealed Page token; a failure means the keyring lacks the key it was sealed with.
pub fn open_token(keyring: &Keyring, sealed: &[u8]) -> anyhow::Result<SecretString> {
    let token = keyring
        .open_string(SealedField::PageAccessToken, sealed)
        .context("opening a Page access token")?;
    Ok(SecretString::from(token))
}

/// Halts a Page that Facebook refuses for good (token, permission, block): nothing more is
/// sent from it, and its running campaigns are paused, until an admin resumes it. Admins are
/// e-mailed, the halt counted and logged (once per halt: only the call that halted an active
/// Page reports it), whichever job met the refusal. Returns the campaigns it paused, or `None`
/// when the Page was halted already.
pub async fn halt(pool: &PgPool, page_id: i64, reason: &str) -> anyhow::Result<Option<Vec<i64>>> {
    let mut tx = pool.begin().await.context("halting a Page")?;
    let halted = sqlx::query(
        "UPDATE pages SET status = 'halted', halted_reason = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(page_id)
    .bind(reason)
    .execute(&mut *tx)
    .await
    .context("halting a Page")?;
    if halted.rows_affected() == 0 {
        return Ok(None);
    }
    let paused = crate::campaigns::pause_for_halt(&mut tx, page_id).await?;
    moonengage_ops::alerts::admin(
        &mut *tx,
        moonengage_ops::alerts::AdminEvent::PageHalted {
            page_id,
            paused_campaigns: paused.clone(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        },
    )
    .await?;
    tx.commit().await.context("committing a Page's halt")?;
    moonengage_ops::metrics::page_halted(page_id);
    tracing::warn!(page_id, "Page halted; its campaigns are paused");
    Ok(Some(paused))
}

/// Resumes a halted Page of the workspace (after an admin fixed its token or permissions) and
/// the campaigns its halt paused; campaigns an admin paused stay paused. Returns the campaigns
/// resumed, or `None` when the workspace has no such Page.
pub async fn resume(
    pool: &PgPool,
    workspace_id: i64,
    page_id: i64,
) -> anyhow::Result<Option<Vec<i64>>> {
    let mut tx = pool.begin().await.context("resuming a Page")?;
    let found = sqlx::query(
        "UPDATE pages SET status = 'active', halted_reason = NULL
         WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace_id)
    .bind(page_id)
    .execute(&mut *tx)
    .await
    .context("resuming a Page")?;
    if found.rows_affected() == 0 {
        return Ok(None);
    }
    let resumed = crate::campaigns::resume_after_halt(&mut tx, page_id).await?;
    tx.commit()
        .await
        .context("committing a Page's resumption")?;
    Ok(Some(resumed))
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
    /// Whether it sends.
    pub status: PageStatus,
    /// Why it was halted.
    pub halted_reason: Option<String>,
    /// When it was registered.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The workspace's Pages, oldest first.
pub async fn list(pool: &PgPool, workspace_id: i64) -> anyhow::Result<Vec<PageSummary>> {
    sqlx::query_as(
        "SELECT id, fb_page_id, name, send_rate, status, halted_reason, created_at
         FROM pages WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .context("listing Pages")
}

/// Sets the send rate of a Page of the workspace (messages per second, which the rate limiter
/// reads); `false` when the workspace has no such Page.
pub async fn set_send_rate(
    pool: &PgPool,
    workspace_id: i64,
    page_id: i64,
    send_rate: i32,
) -> anyhow::Result<bool> {
    check_send_rate(send_rate)?;
    let updated =
        sqlx::query("UPDATE pages SET send_rate = $3 WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(page_id)
            .bind(send_rate)
            .execute(pool)
            .await
            .context("setting a Page's send rate")?;
    Ok(updated.rows_affected() == 1)
}

/// Facebook's id of a Page of the workspace (the blind index of its subscribers' PSIDs is
/// keyed by it), or `None` when the workspace has no such Page.
pub async fn fb_page_id(
    pool: &PgPool,
    workspace_id: i64,
    page_id: i64,
) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT fb_page_id FROM pages WHERE workspace_id = $1 AND id = $2")
        .bind(workspace_id)
        .bind(page_id)
        .fetch_optional(pool)
        .await
        .context("finding a Page")
}
