//! Who is using the console: the session cookie, checked against the stored hashes on every
//! request, and the CSRF token every form of the session carries. The cookie is
//! `__Host-moonengage_session` (HttpOnly, Secure, SameSite=Strict, Path=/, no Domain), so only
//! this host over HTTPS (or `localhost`) ever sees it and no script can read it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use hmac::{Hmac, Mac};
use moonengage_accounts::{Principal, sessions};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::frame::ConsoleError;
use crate::state::AppState;

/// The session cookie's name; the `__Host-` prefix makes browsers refuse it unless it is
/// Secure, has Path=/ and no Domain.
pub(crate) const COOKIE: &str = "__Host-moonengage_session";

/// A request of a logged-in user.
pub(crate) struct Console {
    /// Who, in which workspace, with which role (`Via::Session`).
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// A form that carries only the CSRF token (a button that does one thing).
#[derive(serde::Deserialize)]
pub(crate) struct Csrf {
    /// The session's CSRF token.
    pub csrf: String,
}

impl Console {
    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), ConsoleError> {
        if bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::Csrf)
        }
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Console, ConsoleError> {
        let secret = presented(parts).ok_or(ConsoleError::LoggedOut)?;
        let principal = sessions::authenticate(&state.pool, &secret, &state.settings.accounts)
            .await?
            .ok_or(ConsoleError::LoggedOut)?;
        Ok(Console {
            principal,
            csrf: csrf_token(&secret),
        })
    }
}

/// The session secret of the request's cookie, if any.
fn presented(parts: &Parts) -> Option<SecretString> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}

/// HMAC(session secret, "csrf"): unguessable without the cookie, the same on every page of
/// the session, and useless once the session ends.
pub(crate) fn csrf_token(secret: &SecretString) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes any key");
    mac.update(b"csrf");
    hex::encode(mac.finalize().into_bytes())
}

/// The `Set-Cookie` that hands a new session's secret to the browser.
pub(crate) fn set_cookie(secret: &SecretString) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; Secure; SameSite=Strict; Path=/",
        secret.expose_secret()
    ))
    .expect("a minted secret is a valid header value")
}

/// The `Set-Cookie` that makes the browser forget the session cookie.
pub(crate) fn expire_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-moonengage_session=; Max-Age=0; HttpOnly; Secure; SameSite=Strict; Path=/",
    )
}
