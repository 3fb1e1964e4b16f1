//! Envelope encryption of personal fields at rest, and blind indexes to find them.
//!
//! Sealing every field with age would be far too slow for 10k sends/s, so fields are sealed with
//! XChaCha20-Poly1305 under a random 256-bit *data key*, and only the data keys (rows of
//! `data_keys`) are encrypted with age to the configured X25519 recipients. Losing the database
//! alone reveals nothing; the age identities in the settings unlock it.
//!
//! A sealed value carries the id of its data key, so keys can rotate online: new values are sealed
//! under the newest key while older values still open, and a rotation job finds the rows to
//! re-encrypt with [`key_id_of`].

mod blind_index;
mod data_key;
mod envelope;
mod keyring;
mod settings;
mod store;

pub use data_key::generate_identity;
pub use envelope::{SealedField, key_id_of};
pub use keyring::Keyring;
pub use settings::{CryptoSettings, CryptoSettingsError};
pub use store::add_data_key;

pub(crate) use settings::decode_secret_base64;

/// Why the keyring could not be built or a sealed value could not be opened. No message ever
/// contains a plaintext or a key.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The `crypto` settings are missing or invalid; the message names the key.
    #[error("invalid setting `{key}`: {0}", key = .0.key())]
    Settings(#[from] CryptoSettingsError),
    /// Reading or storing data keys failed.
    #[error("reading or storing data keys failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A data key still in use was wrapped to none of the configured identities: the data sealed
    /// under it would be unreadable, so starting is refused.
    #[error("data key {id} cannot be unwrapped by any identity in `crypto.age_identities`")]
    DataKeyUnavailable {
        /// The `data_keys.id` of the key.
        id: i32,
    },
    /// A wrapped data key is not a valid age file holding a 32-byte key.
    #[error("data key {id} is corrupt: {reason}")]
    CorruptDataKey {
        /// The `data_keys.id` of the key.
        id: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// Every data key is retired, so none may seal; a running keyring keeps the keys it has.
    #[error("every data key is retired; none may seal new values")]
    NoUsableDataKey,
    /// age refused to wrap a new data key.
    #[error("wrapping a new data key with age failed: {0}")]
    Wrap(#[source] age::EncryptError),
    /// The sealed value is shorter than its fixed header, nonce and tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// The sealed value starts with a format version this code does not know.
    #[error("sealed value has unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The sealed value names a data key that this keyring does not hold.
    #[error("sealed value uses data key {0}, which is not loaded")]
    UnknownKey(i32),
    /// The sealed value is authentic but belongs to another column: a bug that stored or read the
    /// wrong field, or a swap of ciphertexts between columns.
    #[error("sealed value belongs to `{found}`, not `{expected}`")]
    WrongField {
        /// The field the caller asked for.
        expected: SealedField,
        /// The field the value was sealed for.
        found: SealedField,
    },
    /// The sealed value failed authentication: it was altered, or sealed by someone else.
    #[error("sealed value failed authentication (tampered or forged)")]
    Tampered,
    /// A value opened with [`Keyring::open_string`] is not UTF-8 text.
    #[error("sealed value is not UTF-8 text")]
    NotUtf8,
}
