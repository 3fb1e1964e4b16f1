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
