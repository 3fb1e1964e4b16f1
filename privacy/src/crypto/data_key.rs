//! Data keys: random 256-bit AEAD keys, stored wrapped with age to the configured recipients.

use std::io::{Read, Write};

use age::x25519::{Identity, Recipient};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::CryptoError;

/// Length of a data key: XChaCha20-Poly1305 takes 256-bit keys.
pub(crate) const DATA_KEY_LEN: usize = 32;

/// A data key in memory, zeroed when dropped.
pub(crate) type DataKey = SecretBox<[u8; DATA_KEY_LEN]>;

/// A fresh data key from the operating system's random source.
pub(crate) fn generate() -> DataKey {
    SecretBox::init_with_mut(|key: &mut [u8; DATA_KEY_LEN]| OsRng.fill_bytes(key))
}

/// Encrypts a data key with age to every recipient, for the `data_keys.wrapped` column.
pub(crate) fn wrap(key: &DataKey, recipients: &[Recipient]) -> Result<Vec<u8>, CryptoError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(CryptoError::Wrap)?;
    let mut wrapped = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut wrapped)
        .map_err(|e| CryptoError::Wrap(e.into()))?;
    writer
        .write_all(key.expose_secret())
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| CryptoError::Wrap(e.into()))?;
    Ok(wrapped)
}

/// Decrypts the data key `id` with the first identity it was wrapped to.
pub(crate) fn unwrap(
    id: i32,
    wrapped: &[u8],
    identities: &[Identity],
) -> Result<DataKey, CryptoError> {
    let corrupt = |reason: String| CryptoError::CorruptDataKey { id, reason };
    let decryptor = age::Decryptor::new_buffered(wrapped).map_err(|e| corrupt(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => CryptoError::DataKeyUnavailable { id },
            other => corrupt(other.to_string()),
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(DATA_KEY_LEN));
    reader
        .read_to_end(&mut plain)
        .map_err(|e| corrupt(e.to_string()))?;
    if plain.len() != DATA_KEY_LEN {
        return Err(corrupt(format!(
            "holds {} bytes, not {DATA_KEY_LEN}",
            plain.len()
        )));
    }
    Ok(SecretBox::init_with_mut(|key: &mut [u8; DATA_KEY_LEN]| {
        key.copy_from_slice(&plain);
    }))
}

/// Creates an age X25519 key pair for `crypto.age_identities` (the secret identity) and, on
/// another machine, `crypto.age_recipients` (the public recipient), without needing the `age`
/// tool. Returns `(identity, recipient)`.
pub fn generate_identity() -> (SecretString, String) {
    let identity = Identity::generate();
    (identity.to_string(), identity.to_public().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_unwraps_with_any_recipient_identity() {
        let online = Identity::generate();
        let recovery = Identity::generate();
        let key = generate();
        let wrapped = wrap(&key, &[online.to_public(), recovery.to_public()]).unwrap();
        assert!(
            !wrapped
                .windows(DATA_KEY_LEN)
                .any(|w| w == key.expose_secret())
        );

        for identity in [online, recovery] {
            let unwrapped = unwrap(4, &wrapped, &[identity]).unwrap();
            assert_eq!(unwrapped.expose_secret(), key.expose_secret());
        }
    }

    #[test]
    fn a_stranger_cannot_unwrap_and_the_error_names_the_key() {
        let key = generate();
        let wrapped = wrap(&key, &[Identity::generate().to_public()]).unwrap();
        let err = unwrap(9, &wrapped, &[Identity::generate()]).err().unwrap();
        assert!(
            matches!(err, CryptoError::DataKeyUnavailable { id: 9 }),
            "{err}"
        );
        assert!(err.to_string().contains("data key 9"), "{err}");
    }

    #[test]
    fn garbage_is_reported_as_corrupt() {
        let err = unwrap(3, b"not an age file", &[Identity::generate()])
            .err()
            .unwrap();
        assert!(
            matches!(err, CryptoError::CorruptDataKey { id: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn generated_identity_parses_and_matches_its_recipient() {
        let (identity, recipient) = generate_identity();
        let parsed: Identity = identity.expose_secret().parse().unwrap();
        assert_eq!(parsed.to_public().to_string(), recipient);
        assert!(recipient.starts_with("age1"));
        assert!(!format!("{identity:?}").contains("AGE-SECRET-KEY"));
    }
}
