//! HMAC-SHA256 checks of what Facebook signs with the App Secret: the `X-Hub-Signature-256`
//! header of a webhook, and (for the data-deletion callback) a `signed_request`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a webhook signature was refused. Every variant is answered the same way; logs tell them
/// apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("signature header is missing")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("signature header is malformed")]
    Malformed,
    /// The signature does not match the body.
    #[error("signature does not match the body")]
    Mismatch,
}

/// HMAC-SHA256 of `message` keyed with `secret`.
pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether `expected` is the HMAC-SHA256 of `message` under `secret`, compared in constant time
/// so a forger learns nothing from how long a refusal takes.
pub fn verify_hmac_sha256(secret: &[u8], message: &[u8], expected: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(message);
    mac.verify_slice(expected).is_ok()
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` against the raw body bytes, exactly as received:
/// Facebook signs its own (escaped-unicode) serialisation, so re-serialised JSON would not match.
pub fn verify_signature(
    app_secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let digest = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if verify_hmac_sha256(app_secret, body, &digest) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"app-secret";

    fn header(body: &[u8]) -> String {
        format!("sha256={}", hex::encode(hmac_sha256(SECRET, body)))
    }

    #[test]
    fn a_signature_over_the_raw_bytes_verifies() {
        let body = br#"{"object":"page","entry":[{"id":"1","text":"caf\u00e9"}]}"#;
        assert_eq!(verify_signature(SECRET, body, Some(&header(body))), Ok(()));
        assert_eq!(
            verify_signature(
                SECRET,
                body,
                Some(&header(body).to_uppercase().replace("SHA256", "sha256"))
            ),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let body = b"{\"a\":1}";
        assert_eq!(
            verify_signature(SECRET, body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(SECRET, body, Some("sha1=abcd")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(SECRET, body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(SECRET, b"{\"a\": 1}", Some(&header(body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", body, Some(&header(body))),
            Err(SignatureError::Mismatch)
        );
    }
}
