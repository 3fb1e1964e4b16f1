//! Exports (GDPR Art. 15/20): the JSON of everything held about a person, sealed at rest and
//! served once through a link whose random token is stored only as a hash.

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool};

use crate::crypto::{Keyring, SealedField};

/// 256 random bits: a link cannot be guessed, only received.
const TOKEN_BYTES: usize = 32;
/// Longest token text accepted (43 characters of base64url); anything else is refused unread.
const TOKEN_CHARS: usize = (TOKEN_BYTES * 4).div_ceil(3);

/// An export just stored, and the token of its link (shown once, never stored).
#[derive(Debug)]
pub struct Created {
    /// The secret part of `/exports/{token}`.
    pub token: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// What a download link leads to.
#[derive(Debug)]
pub enum Taken {
    /// The JSON, handed over once: the row is deleted.
    Json(Vec<u8>),
    /// The link ran out before it was used; the export is deleted now.
    Expired,
    /// No such export: never issued, downloaded already, or erased.
    Gone,
}

/// What is stored of a link token.
pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores the export of a request, sealed, with a fresh link that expires after `ttl_days`. A
/// run of the same request again replaces the export and its link (the old token, never
/// stored, cannot be shown again).
pub async fn store(
    executor: impl PgExecutor<'_>,
    keyring: &Keyring,
    request_id: i64,
    subscriber_id: i64,
    json: &[u8],
    ttl_days: u32,
) -> anyhow::Result<Created> {
    let token = fresh_token();
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO exports (dsr_request_id, subscriber_id, token_hash, payload, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))
         ON CONFLICT (dsr_request_id) DO UPDATE
           SET token_hash = EXCLUDED.token_hash, payload = EXCLUDED.payload,
               created_at = now(), expires_at = EXCLUDED.expires_at
         RETURNING expires_at",
    )
    .bind(request_id)
    .bind(subscriber_id)
    .bind(token_hash(&token))
    .bind(keyring.seal(SealedField::ExportPayload, json))
    .bind(i32::try_from(ttl_days).unwrap_or(i32::MAX))
    .fetch_one(executor)
    .await
    .context("storing an export")?;
    Ok(Created { token, expires_at })
}

/// A new random link token.
pub(crate) fn fresh_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a download link still leads to an export, without using it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// There to download.
    Ready,
    /// Past its expiry (deleted on the next download attempt or by retention).
    Expired,
    /// No such export.
    Gone,
}

/// Looks a link up without handing the export over.
pub async fn peek(pool: &PgPool, token: &str) -> anyhow::Result<Peeked> {
    if !well_formed(token) {
        return Ok(Peeked::Gone);
    }
    let expired: Option<bool> =
        sqlx::query_scalar("SELECT expires_at <= now() FROM exports WHERE token_hash = $1")
            .bind(token_hash(token))
            .fetch_optional(pool)
            .await
            .context("looking up an export")?;
    Ok(match expired {
        None => Peeked::Gone,
        Some(true) => Peeked::Expired,
        Some(false) => Peeked::Ready,
    })
}

/// A token we could have issued: its exact length, in base64url.
fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS && URL_SAFE_NO_PAD.decode(token).is_ok()
}

/// Hands an export over once: the row is deleted in the same statement that reads it, so two
/// concurrent downloads cannot both succeed.
pub async fn take(pool: &PgPool, keyring: &Keyring, token: &str) -> anyhow::Result<Taken> {
    if !well_formed(token) {
        return Ok(Taken::Gone);
    }
    let row: Option<(Vec<u8>, bool)> = sqlx::query_as(
        "DELETE FROM exports WHERE token_hash = $1 RETURNING payload, expires_at <= now()",
    )
    .bind(token_hash(token))
    .fetch_optional(pool)
    .await
    .context("taking an export")?;
    Ok(match row {
        None => Taken::Gone,
        Some((_, true)) => Taken::Expired,
        Some((sealed, false)) => Taken::Json(
            keyring
                .open(SealedField::ExportPayload, &sealed)
                .context("opening an export")?,
        ),
    })
}
