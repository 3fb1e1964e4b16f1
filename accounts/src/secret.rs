//! Secrets we hand out — API tokens, session ids, invitation and set-password links: 32 random
//! bytes behind a prefix that names the kind (so a leaked one is recognisable in a secret
//! scanner), shown once and stored only as a SHA-256 hash. A look-up by the hash of a 256-bit
//! random value leaks nothing useful through timing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A new secret and the hash to store for it.
#[derive(Debug)]
pub struct Minted {
    /// The secret, for the person it is for; never stored.
    pub secret: SecretString,
    /// What is stored and looked up.
    pub hash: Vec<u8>,
}

/// Mints a secret whose text starts with `prefix` (e.g. `me_` for API tokens).
pub fn mint(prefix: &str) -> Minted {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&secret);
    Minted {
        secret: SecretString::from(secret),
        hash,
    }
}

/// The stored form of a secret presented by a client.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The stored form of a presented secret held as a [`SecretString`].
pub fn hash_secret(secret: &SecretString) -> Vec<u8> {
    hash(secret.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_secret_is_prefixed_unique_and_hashed() {
        let a = mint("me_");
        let b = mint("me_");
        assert!(a.secret.expose_secret().starts_with("me_"));
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert_eq!(a.hash, hash(a.secret.expose_secret()));
        assert_eq!(a.hash.len(), 32);
    }
}
