//! Passwords of account holders, per NIST SP 800-63B: at least 12 characters, checked against a
//! list of commonly used passwords and the account's own name, no composition rules; stored as
//! argon2id PHC strings (OWASP's parameters, `Argon2::default()`). Hashing is deliberately slow,
//! so it runs on the blocking pool, never on a request's executor thread.

use anyhow::Context as _;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

#[cfg(test)]
mod tests;

/// The shortest password accepted.
pub const MIN_CHARS: usize = 12;
/// The longest accepted: long passphrases are welcome, unbounded input to a slow hash is not.
pub const MAX_CHARS: usize = 256;

/// Passwords seen most in breaches that are long enough to pass the length rule, lower-cased.
const COMMON: &str = include_str!("common.txt");

/// Why a new password is refused; the message says what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    /// Shorter than [`MIN_CHARS`].
    #[error("the password must be at least {MIN_CHARS} characters long")]
    TooShort,
    /// Longer than [`MAX_CHARS`].
    #[error("the password must be at most {MAX_CHARS} characters long")]
    TooLong,
    /// On the list of commonly used passwords.
    #[error("this password is commonly used and easy to guess; choose another")]
    Common,
    /// Little more than the account's e-mail name or the service's name.
    #[error("the password must not be built from your e-mail address or the service's name")]
    Contextual,
}

/// Checks a new password for the account with e-mail `email`.
pub fn check(password: &str, email: &str) -> Result<(), PasswordRejected> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordRejected::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(PasswordRejected::TooLong);
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|common| common == lower) || is_one_repeated_unit(&lower) {
        return Err(PasswordRejected::Common);
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    let mut rest = lower.replace("moonengage", "");
    if local.chars().count() >= 3 {
        rest = rest.replace(&local, "");
    }
    if rest.chars().filter(|c| c.is_alphanumeric()).count() < 8 {
        return Err(PasswordRejected::Contextual);
    }
    Ok(())
}

/// `aaaaaaaaaaaa`, `abcabcabcabc`: a short unit repeated is as weak as the unit.
fn is_one_repeated_unit(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    (1..=4).any(|unit| {
        chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|chunk| chunk == &chars[..unit])
    })
}

/// The PHC string to store for a password already [`check`]ed.
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .context("the password hashing task")?
}

/// Whether `password` matches the stored PHC string. With no stored hash (unknown account, or
/// one whose password is not set yet) a dummy hash is checked, so the answer takes as long
/// either way and timing does not tell which e-mail addresses have accounts.
pub async fn verify(password: SecretString, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| anyhow::anyhow!("a stored password hash does not parse: {e}"))?;
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .context("the password verification task")?
}

/// An argon2id hash (default parameters) of a random password nobody knows.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$FQ4mW8zqBLLyC1bKZ2mWl4a9TWCbnMmn5wW9VbvwqX8";
