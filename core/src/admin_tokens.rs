//! Bearer tokens of the admin API. A token is 32 random bytes shown once; only its SHA-256 hash
//! is stored, so a database leak yields no usable token. Revoking (logging out) is a column
//! update checked on every request, so it takes effect at once.

use anyhow::Context as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Marks our tokens, so a leaked one is recognisable in a secret scanner.
const PREFIX: &str = "me_";

/// A token just created: its id, and the token itself, which is never shown again.
#[derive(Debug)]
pub struct NewToken {
    /// `admin_tokens.id`, used to revoke it.
    pub id: i64,
    /// The bearer token.
    pub token: SecretString,
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a token for `name` (who or what uses it).
pub async fn create(pool: &PgPool, name: &str) -> anyhow::Result<NewToken> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let id = sqlx::query_scalar(
        "INSERT INTO admin_tokens (name, token_hash) VALUES ($1, $2) RETURNING id",
    )
    .bind(name)
    .bind(hash(&token))
    .fetch_one(pool)
    .await
    .context("creating an admin token")?;
    Ok(NewToken {
        id,
        token: SecretString::from(token),
    })
}

/// The id of a live token, or `None` for an unknown or revoked one. The look-up is by hash of a
/// 256-bit random value, so timing reveals nothing useful.
pub async fn authenticate(pool: &PgPool, token: &SecretString) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE admin_tokens SET last_used_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL RETURNING id",
    )
    .bind(hash(token.expose_secret()))
    .fetch_optional(pool)
    .await
    .context("checking an admin token")
}

/// Revokes a token; `false` when there is no live token with that id.
pub async fn revoke(pool: &PgPool, id: i64) -> anyhow::Result<bool> {
    let revoked = sqlx::query(
        "UPDATE admin_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await
    .context("revoking an admin token")?;
    Ok(revoked.rows_affected() == 1)
}
