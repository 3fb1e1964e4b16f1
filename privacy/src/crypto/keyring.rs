//! The keyring every process holds: the unwrapped data keys and the blind-index pepper.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305};
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroize;

use super::blind_index::BlindIndexKey;
use super::data_key::DataKey;
use super::store::{KeyState, Source};
use super::{CryptoError, SealedField, envelope};

/// Seals and opens personal fields, and computes blind indexes. Built once at start by
/// [`Keyring::load_or_create`]; cloning is cheap (shared), so handlers and jobs each keep one.
/// A keyring loaded from the database follows `data_keys` as it changes (see
/// [`Keyring::refresh`]), so a long-running process keeps up with key rotations.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced whole when `data_keys` changes; a seal or open clones the `Arc` and never waits
    /// for a reload.
    keys: RwLock<Arc<KeySet>>,
    blind_index: BlindIndexKey,
    /// Where a refresh reads from; `None` for a keyring built from keys in memory.
    source: Option<Source>,
    /// One reload at a time, so a burst of callers does not read `data_keys` once each.
    reloading: tokio::sync::Mutex<()>,
}

/// The data keys usable at one moment.
pub(super) struct KeySet {
    /// The data key that seals new values.
    current_id: i32,
    /// Every loaded key, the current one included; each opens values.
    ciphers: HashMap<i32, XChaCha20Poly1305>,
    /// What `data_keys` looked like when these were loaded, to tell whether a reload is due.
    pub(super) states: Vec<KeyState>,
}

impl KeySet {
    /// `current` seals, every key opens.
    pub(super) fn new(
        current: (i32, DataKey),
        older: impl IntoIterator<Item = (i32, DataKey)>,
        states: Vec<KeyState>,
    ) -> KeySet {
        let cipher = |key: &DataKey| XChaCha20Poly1305::new(Key::from_slice(key.expose_secret()));
        let mut ciphers: HashMap<i32, XChaCha20Poly1305> = older
            .into_iter()
            .map(|(id, key)| (id, cipher(&key)))
            .collect();
        ciphers.insert(current.0, cipher(&current.1));
        KeySet {
            current_id: current.0,
            ciphers,
            states,
        }
    }

    /// The id of the data key that seals.
    pub(super) fn current_id(&self) -> i32 {
        self.current_id
    }

    fn current(&self) -> &XChaCha20Poly1305 {
        self.ciphers
            .get(&self.current_id)
            .expect("the current key is always among the loaded keys")
    }
}

/// A keyring that does not keep its keys alive: the background refresh holds one, so it stops
/// when the process drops its last keyring.
pub(super) struct WeakKeyring(Weak<Inner>);

impl WeakKeyring {
    /// The keyring, while anyone still holds it.
    pub(super) fn upgrade(&self) -> Option<Keyring> {
        self.0.upgrade().map(|inner| Keyring { inner })
    }
}

impl Keyring {
    /// Builds a keyring from unwrapped data keys; `current` seals, every key opens.
    #[cfg(test)]
    pub(crate) fn new(
        current: (i32, DataKey),
        older: impl IntoIterator<Item = (i32, DataKey)>,
        blind_index: BlindIndexKey,
    ) -> Keyring {
        Keyring::with_source(KeySet::new(current, older, Vec::new()), blind_index, None)
    }

    /// Builds a keyring that can re-read its keys from `source`.
    pub(super) fn with_source(
        keys: KeySet,
        blind_index: BlindIndexKey,
        source: Option<Source>,
    ) -> Keyring {
        Keyring {
            inner: Arc::new(Inner {
                keys: RwLock::new(Arc::new(keys)),
                blind_index,
                source,
                reloading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The keys in use now.
    pub(super) fn keys(&self) -> Arc<KeySet> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Switches to freshly loaded keys.
    pub(super) fn install(&self, keys: KeySet) {
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Where to reload from, and the lock that makes reloads one at a time.
    pub(super) fn source(&self) -> Option<(&Source, &tokio::sync::Mutex<()>)> {
        self.inner
            .source
            .as_ref()
            .map(|source| (source, &self.inner.reloading))
    }

    /// A handle that does not keep this keyring alive.
    pub(super) fn downgrade(&self) -> WeakKeyring {
        WeakKeyring(Arc::downgrade(&self.inner))
    }

    /// The data key new values are sealed under; values under any other key are due for
    /// re-encryption by a rotation.
    pub fn current_key_id(&self) -> i32 {
        self.keys().current_id
    }

    /// Encrypts a field for storage in the column named by `context`.
    pub fn seal(&self, context: SealedField, plaintext: &[u8]) -> Vec<u8> {
        let keys = self.keys();
        envelope::seal(keys.current(), keys.current_id, context, plaintext)
    }

    /// Decrypts a field read from the column named by `context`.
    pub fn open(&self, context: SealedField, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let keys = self.keys();
        envelope::open(|id| keys.ciphers.get(&id), context, sealed)
    }

    /// [`Keyring::seal`] for text fields.
    pub fn seal_str(&self, context: SealedField, plaintext: &str) -> Vec<u8> {
        self.seal(context, plaintext.as_bytes())
    }

    /// [`Keyring::open`] for text fields.
    pub fn open_string(&self, context: SealedField, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|e| {
            e.into_bytes().zeroize();
            CryptoError::NotUtf8
        })
    }

    /// The look-up key of a subscriber: HMAC-SHA256 of the Page id and PSID under the secret
    /// pepper (32 bytes). Deterministic, so `subscribers.psid_index` finds the row, yet useless
    /// to anyone without the pepper.
    pub fn blind_index(&self, page_fb_id: &str, psid: &str) -> Vec<u8> {
        self.inner.blind_index.compute(page_fb_id, psid)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys();
        let mut ids: Vec<i32> = keys.ciphers.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Keyring")
            .field("current_key_id", &keys.current_id)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretBox;

    use super::super::{data_key, key_id_of};
    use super::*;

    fn key(byte: u8) -> DataKey {
        SecretBox::new(Box::new([byte; 32]))
    }

    fn keyring() -> Keyring {
        Keyring::new(
            (7, key(1)),
            [(3, key(2))],
            BlindIndexKey::new(&[9; 32]).unwrap(),
        )
    }

    #[test]
    fn round_trip_under_the_current_key() {
        let keyring = keyring();
        let sealed = keyring.seal(SealedField::SubscriberPsid, b"24680");
        assert_eq!(key_id_of(&sealed), Some(7));
        assert_eq!(sealed.len(), 1 + 4 + 24 + 5 + 16);
        assert_eq!(
            keyring.open(SealedField::SubscriberPsid, &sealed).unwrap(),
            b"24680"
        );

        let sealed = keyring.seal_str(SealedField::SubscriberFirstName, "Zoë");
        assert_eq!(
            keyring
                .open_string(SealedField::SubscriberFirstName, &sealed)
                .unwrap(),
            "Zoë"
        );
        let empty = keyring.seal(SealedField::PageAccessToken, b"");
        assert_eq!(
            keyring.open(SealedField::PageAccessToken, &empty).unwrap(),
            b""
        );
    }

    #[test]
    fn values_under_an_older_key_still_open() {
        let old = Keyring::new((3, key(2)), [], BlindIndexKey::new(&[9; 32]).unwrap());
        let sealed = old.seal(SealedField::SubscriberPsid, b"13579");
        assert_eq!(
            keyring()
                .open(SealedField::SubscriberPsid, &sealed)
                .unwrap(),
            b"13579"
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let other = Keyring::new((8, key(5)), [], BlindIndexKey::new(&[9; 32]).unwrap());
        let sealed = other.seal(SealedField::SubscriberPsid, b"1");
        assert!(matches!(
            keyring().open(SealedField::SubscriberPsid, &sealed),
            Err(CryptoError::UnknownKey(8))
        ));
    }

    #[test]
    fn every_single_byte_tamper_fails() {
        let keyring = keyring();
        let sealed = keyring.seal(SealedField::SubscriberPsid, b"1234567890");
        for i in 0..sealed.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut tampered = sealed.clone();
                tampered[i] ^= flip;
                assert!(
                    keyring
                        .open(SealedField::SubscriberPsid, &tampered)
                        .is_err(),
                    "byte {i} ^ {flip:#x} accepted"
                );
            }
        }
        let mut tampered = sealed.clone();
        tampered[sealed.len() - 1] ^= 1;
        assert!(matches!(
            keyring.open(SealedField::SubscriberPsid, &tampered),
            Err(CryptoError::Tampered)
        ));
        tampered = sealed.clone();
        tampered[0] = 2;
        assert!(matches!(
            keyring.open(SealedField::SubscriberPsid, &tampered),
            Err(CryptoError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn truncation_fails() {
        let keyring = keyring();
        let sealed = keyring.seal(SealedField::SubscriberPsid, b"1234567890");
        for len in 0..sealed.len() {
            let result = keyring.open(SealedField::SubscriberPsid, &sealed[..len]);
            assert!(result.is_err(), "prefix of {len} bytes accepted");
        }
        assert!(matches!(
            keyring.open(SealedField::SubscriberPsid, &sealed[..44]),
            Err(CryptoError::Truncated)
        ));
        assert_eq!(key_id_of(&sealed[..44]), None);
    }

    #[test]
    fn the_wrong_context_fails_and_is_reported_as_such() {
        let keyring = keyring();
        let sealed = keyring.seal(SealedField::SubscriberPsid, b"1234567890");
        let err = keyring
            .open(SealedField::SubscriberFirstName, &sealed)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::WrongField {
                    expected: SealedField::SubscriberFirstName,
                    found: SealedField::SubscriberPsid
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn sealing_twice_differs() {
        let keyring = keyring();
        let a = keyring.seal(SealedField::SubscriberPsid, b"same");
        let b = keyring.seal(SealedField::SubscriberPsid, b"same");
        assert_ne!(a, b);
        assert_ne!(a[5..29], b[5..29], "nonces repeat");
    }

    #[test]
    fn errors_and_debug_reveal_no_plaintext() {
        let keyring = keyring();
        let sealed = keyring.seal(SealedField::SubscriberPsid, b"SECRETPSID");
        let err = keyring
            .open(SealedField::PageAccessToken, &sealed)
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRETPSID"));
        let shown = format!("{keyring:?}");
        assert_eq!(shown, "Keyring { current_key_id: 7, key_ids: [3, 7], .. }");
    }

    #[test]
    fn blind_index_comes_from_the_pepper() {
        let a = keyring();
        let b = Keyring::new((7, key(1)), [], BlindIndexKey::new(&[10; 32]).unwrap());
        assert_eq!(a.blind_index("1", "2"), a.clone().blind_index("1", "2"));
        assert_ne!(a.blind_index("1", "2"), a.blind_index("3", "2"));
        assert_ne!(a.blind_index("1", "2"), b.blind_index("1", "2"));
    }

    #[test]
    fn a_wrapped_data_key_seals_the_same_after_unwrapping() {
        let identity = age::x25519::Identity::generate();
        let key = data_key::generate();
        let wrapped = data_key::wrap(&key, &[identity.to_public()]).unwrap();
        let sealer = Keyring::new((1, key), [], BlindIndexKey::new(&[9; 32]).unwrap());
        let unwrapped = data_key::unwrap(1, &wrapped, &[identity]).unwrap();
        let opener = Keyring::new((1, unwrapped), [], BlindIndexKey::new(&[9; 32]).unwrap());
        let sealed = sealer.seal(SealedField::PageAccessToken, b"EAAB...");
        assert_eq!(
            opener.open(SealedField::PageAccessToken, &sealed).unwrap(),
            b"EAAB..."
        );
    }
}
