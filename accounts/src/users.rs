//! People who log in. An e-mail address is the login, kept lower-cased and trimmed so the same
//! person cannot hold two accounts by capitalisation.

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::password::{self, PasswordRejected};

/// An e-mail address that cannot be a login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an e-mail address")]
pub struct InvalidEmail(pub String);

/// The stored form of an e-mail address: trimmed, lower-cased, checked for one `@` between a
/// name and a domain with a dot.
pub fn normalize_email(email: &str) -> Result<String, InvalidEmail> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(name, domain)| {
            !name.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(InvalidEmail(email))
    }
}

/// The id of the user with this (normalised) e-mail, creating the user (no password yet) when
/// there is none. Returns the id and whether the user is new.
pub async fn find_or_create<'e>(
    executor: impl PgExecutor<'e>,
    email: &str,
) -> anyhow::Result<(i64, bool)> {
    sqlx::query_as(
        "WITH new AS (
             INSERT INTO users (email) VALUES ($1) ON CONFLICT (email) DO NOTHING RETURNING id
         )
         SELECT id, true FROM new
         UNION ALL SELECT id, false FROM users WHERE email = $1
         LIMIT 1",
    )
    .bind(email)
    .fetch_one(executor)
    .await
    .context("finding or creating a user")
}

/// Why a password could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetPasswordError {
    /// The password breaks a rule; the message says which.
    #[error(transparent)]
    Rejected(#[from] PasswordRejected),
    /// The database or the hashing task failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Sets a user's password after checking it against the rules. Give it the transaction of the
/// change: the caller records the event and queues the alert in it (it knows the origin).
pub async fn set_password(
    conn: &mut PgConnection,
    user_id: i64,
    new_password: SecretString,
) -> Result<(), SetPasswordError> {
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
        .context("reading the user to set a password for")?;
    password::check(new_password.expose_secret(), &email)?;
    let hash = password::hash(new_password).await?;
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(user_id)
        .bind(hash)
        .execute(&mut *conn)
        .await
        .context("storing a password hash")?;
    Ok(())
}

/// The user whose e-mail and password these are, or `None`. Takes as long for an unknown
/// address as for a wrong password.
pub async fn check_login(
    pool: &PgPool,
    email: &str,
    password: SecretString,
) -> anyhow::Result<Option<i64>> {
    let email = normalize_email(email).unwrap_or_default();
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(pool)
            .await
            .context("looking up a login")?;
    let (id, stored) = row.map_or((None, None), |(id, stored)| (Some(id), stored));
    let matches = password::verify(password, stored).await?;
    Ok(id.filter(|_| matches))
}

/// Whether `password` is the user's (a user without a password never matches). Takes as long
/// either way.
pub async fn verify_password(
    conn: &mut PgConnection,
    user_id: i64,
    password: SecretString,
) -> anyhow::Result<bool> {
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await
            .context("reading a password hash")?;
    password::verify(password, stored.flatten()).await
}

/// The id of the user with this e-mail, if any (for the per-account login limit and events).
pub async fn id_by_email(pool: &PgPool, email: &str) -> anyhow::Result<Option<i64>> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await
        .context("looking up a user by e-mail")
}

/// Makes a user one of MoonEngage's operators (from a shell only: `moonengage operator
/// create`), who keep the platform's policy versions, incident register and platform-level
/// requests.
pub async fn make_operator<'e>(executor: impl PgExecutor<'e>, user_id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE users SET is_operator = true WHERE id = $1")
        .bind(user_id)
        .execute(executor)
        .await
        .context("making a user an operator")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_normalised_or_refused_by_name() {
        assert_eq!(
            normalize_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
