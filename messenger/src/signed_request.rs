//! Facebook's `signed_request` (the data-deletion callback): `<signature>.<payload>`, both
//! base64url without padding, the signature being HMAC-SHA256 of the encoded payload under the
//! App Secret. Only a verified, unexpired request is believed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::webhook::verify_hmac_sha256;

/// The only algorithm Facebook signs these with; anything else is refused, not downgraded.
const ALGORITHM: &str = "HMAC-SHA256";
/// Longest `signed_request` read; Facebook's are a few hundred bytes.
const MAX_LEN: usize = 4096;
/// How far ahead of our clock `issued_at` may be (clock skew), and how old a request without
/// `expires` may be: a captured request cannot be replayed for ever.
const SKEW_SECS: i64 = 300;
const MAX_AGE_SECS: i64 = 24 * 3600;

/// Why a `signed_request` was refused; nothing is stored for any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    /// Not two base64url parts, or a payload that is not the expected JSON.
    #[error("the signed_request is malformed")]
    Malformed,
    /// The signature does not match the payload under our App Secret.
    #[error("the signed_request signature is invalid")]
    BadSignature,
    /// Signed with another algorithm than HMAC-SHA256.
    #[error("the signed_request algorithm is not HMAC-SHA256")]
    UnsupportedAlgorithm,
    /// Past its `expires`, too old, or issued in the future.
    #[error("the signed_request has expired or is not yet valid")]
    Expired,
}

/// A verified data-deletion request.
#[derive(Clone, PartialEq, Eq)]
pub struct DeletionRequest {
    /// The app-scoped id of the person (personal data: sealed when stored, never logged).
    pub user_id: String,
}

impl std::fmt::Debug for DeletionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeletionRequest").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Payload {
    algorithm: String,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    issued_at: Option<i64>,
    user_id: serde_json::Value,
}

/// Verifies a `signed_request` at time `now`: signature first (in constant time), then the
/// algorithm, then the times.
pub fn verify(
    signed_request: &str,
    app_secret: &[u8],
    now: DateTime<Utc>,
) -> Result<DeletionRequest, SignedRequestError> {
    if signed_request.len() > MAX_LEN {
        return Err(SignedRequestError::Malformed);
    }
    let (signature, payload) = signed_request
        .trim()
        .split_once('.')
        .ok_or(SignedRequestError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| SignedRequestError::Malformed)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| SignedRequestError::Malformed)?;
    if !verify_hmac_sha256(app_secret, payload.as_bytes(), &signature) {
        return Err(SignedRequestError::BadSignature);
    }
    let payload: Payload =
        serde_json::from_slice(&json).map_err(|_| SignedRequestError::Malformed)?;
    if !payload.algorithm.eq_ignore_ascii_case(ALGORITHM) {
        return Err(SignedRequestError::UnsupportedAlgorithm);
    }
    let now = now.timestamp();
    let expired = payload.expires.is_some_and(|at| at > 0 && at <= now);
    let future = payload.issued_at.is_some_and(|at| at > now + SKEW_SECS);
    let stale = payload.expires.is_none_or(|at| at == 0)
        && payload.issued_at.is_none_or(|at| at < now - MAX_AGE_SECS);
    if expired || future || stale {
        return Err(SignedRequestError::Expired);
    }
    let user_id = match payload.user_id {
        serde_json::Value::String(id) if !id.is_empty() => id,
        serde_json::Value::Number(id) => id.to_string(),
        _ => return Err(SignedRequestError::Malformed),
    };
    if user_id.len() > 64 || !user_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SignedRequestError::Malformed);
    }
    Ok(DeletionRequest { user_id })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::webhook::hmac_sha256;

    const SECRET: &[u8] = b"app-secret";

    fn sign(payload: &serde_json::Value, secret: &[u8]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, payload.as_bytes()));
        format!("{signature}.{payload}")
    }

    fn valid(now: i64) -> serde_json::Value {
        json!({"algorithm": "HMAC-SHA256", "expires": now + 60, "issued_at": now,
               "user_id": "1234567890"})
    }

    #[test]
    fn a_valid_request_names_the_user() {
        let now = Utc::now();
        let request = verify(&sign(&valid(now.timestamp()), SECRET), SECRET, now).unwrap();
        assert_eq!(request.user_id, "1234567890");
        assert!(!format!("{request:?}").contains("1234567890"));
    }

    #[test]
    fn every_flaw_is_refused_for_its_reason() {
        let now = Utc::now();
        let t = now.timestamp();
        let check = |signed: String| verify(&signed, SECRET, now).unwrap_err();
        assert_eq!(
            check(sign(&valid(t), b"other")),
            SignedRequestError::BadSignature
        );
        let mut other = valid(t);
        other["algorithm"] = json!("HMAC-SHA1");
        assert_eq!(
            check(sign(&other, SECRET)),
            SignedRequestError::UnsupportedAlgorithm
        );
        let mut expired = valid(t);
        expired["expires"] = json!(t - 1);
        assert_eq!(check(sign(&expired, SECRET)), SignedRequestError::Expired);
        let mut future = valid(t);
        future["issued_at"] = json!(t + 3600);
        assert_eq!(check(sign(&future, SECRET)), SignedRequestError::Expired);
        let stale = json!({"algorithm": "HMAC-SHA256", "issued_at": t - 3 * 86400,
                           "user_id": "1"});
        assert_eq!(check(sign(&stale, SECRET)), SignedRequestError::Expired);
        for garbage in ["", "abc", "a.b.c", "!!!.???", &"x".repeat(5000)] {
            assert_eq!(check(garbage.to_owned()), SignedRequestError::Malformed);
        }
        let padded = sign(&valid(t), SECRET).replacen('.', "=.", 1);
        assert_eq!(check(padded), SignedRequestError::Malformed);
    }
}
