//! What a user changes about their own account: the password and the login e-mail. Both need
//! the current password (a stolen token or session alone cannot take the account over), and
//! each records its event and queues its alert in the transaction of the change. An e-mail
//! change is also told to the old address: it is kept in `email_changes` until the alert job
//! has written to it, then deleted — never put in a job payload.

use anyhow::Context as _;
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};

use crate::activity::{self, EventKind};
use crate::alerts::{self, AccountAlert};
use crate::origin::Origin;
use crate::password::PasswordRejected;
use crate::users::{self, InvalidEmail, SetPasswordError};

/// Why a change to one's own account was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The current password given is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The new password breaks a rule; the message says which.
    #[error(transparent)]
    Password(#[from] PasswordRejected),
    /// The new address is not an e-mail address.
    #[error(transparent)]
    Email(#[from] InvalidEmail),
    /// Another account logs in with the new address.
    #[error("another account uses this e-mail address")]
    EmailTaken,
    /// The database or a hashing task failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<SetPasswordError> for ChangeError {
    fn from(error: SetPasswordError) -> ChangeError {
        match error {
            SetPasswordError::Rejected(rule) => ChangeError::Password(rule),
            SetPasswordError::Internal(error) => ChangeError::Internal(error),
        }
    }
}

/// The transaction's time in Unix milliseconds, rounded up (so it is never before a row
/// written in the transaction).
async fn now_ms(conn: &mut PgConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT ceil(extract(epoch FROM now()) * 1000)::bigint")
        .fetch_one(conn)
        .await
        .context("reading the time")
}

/// Starts a change: a transaction in which `current` was checked against the user's password.
async fn checked(
    pool: &PgPool,
    user_id: i64,
    current: SecretString,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ChangeError> {
    let mut tx = pool.begin().await.context("starting an account change")?;
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .context("locking a user")?;
    if !users::verify_password(&mut tx, user_id, current).await? {
        return Err(ChangeError::WrongPassword);
    }
    Ok(tx)
}

/// Changes the user's password, given the current one.
pub async fn change_password(
    pool: &PgPool,
    user_id: i64,
    current: SecretString,
    new: SecretString,
    origin: &Origin,
) -> Result<(), ChangeError> {
    let mut tx = checked(pool, user_id, current).await?;
    users::set_password(&mut tx, user_id, new).await?;
    activity::record(&mut *tx, user_id, None, EventKind::PasswordChanged, origin).await?;
    let at_ms = now_ms(&mut tx).await?;
    alerts::alert(&mut *tx, AccountAlert::PasswordChanged { user_id, at_ms }).await?;
    tx.commit().await.context("committing a password change")?;
    Ok(())
}

/// Changes the user's login e-mail, given their password. The old address hears of it too.
pub async fn change_email(
    pool: &PgPool,
    user_id: i64,
    password: SecretString,
    new_email: &str,
    origin: &Origin,
) -> Result<(), ChangeError> {
    let new_email = users::normalize_email(new_email)?;
    let mut tx = checked(pool, user_id, password).await?;
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1 AND id <> $2)")
            .bind(&new_email)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await
            .context("checking a new address")?;
    if taken {
        return Err(ChangeError::EmailTaken);
    }
    sqlx::query(
        "INSERT INTO email_changes (user_id, old_email)
         SELECT id, email FROM users WHERE id = $1 AND email <> $2",
    )
    .bind(user_id)
    .bind(&new_email)
    .execute(&mut *tx)
    .await
    .context("keeping the old address for its alert")?;
    sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
        .bind(user_id)
        .bind(&new_email)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => ChangeError::EmailTaken,
            _ => ChangeError::Internal(anyhow::Error::new(e).context("changing an address")),
        })?;
    activity::record(&mut *tx, user_id, None, EventKind::EmailChanged, origin).await?;
    let at_ms = now_ms(&mut tx).await?;
    alerts::alert(&mut *tx, AccountAlert::EmailChanged { user_id, at_ms }).await?;
    tx.commit().await.context("committing an e-mail change")?;
    Ok(())
}
