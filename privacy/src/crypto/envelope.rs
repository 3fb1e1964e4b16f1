//! The layout of a sealed field: `[version u8 = 1][key id u32 big-endian][nonce 24][ciphertext +
//! tag 16]`, sealed with XChaCha20-Poly1305. The additional data is the 5-byte header followed by
//! the context label, so a value cannot be moved to another column or relabelled to another key.

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;

use super::CryptoError;

/// The only format version so far.
const VERSION: u8 = 1;
/// Version byte and key id.
const HEADER_LEN: usize = 1 + 4;
/// A random 192-bit nonce never repeats in practice, however many values one key seals.
const NONCE_LEN: usize = 24;
/// Poly1305 tag.
const TAG_LEN: usize = 16;
/// A sealed empty value.
const MIN_SEALED_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// The column a sealed value belongs to; its label is the context authenticated with the value,
/// so a ciphertext copied into another column (a PSID shown as a first name, one Page's token
/// used for another field) fails to open. Add a variant for each new sealed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedField {
    /// `subscribers.psid`: the Page-scoped id Messenger sends to.
    SubscriberPsid,
    /// `subscribers.first_name`, kept only when configured.
    SubscriberFirstName,
    /// `pages.access_token`: the Page token that authorises sends.
    PageAccessToken,
    /// `webhook_events.psid`: the sender of a received event, kept only until it is processed.
    WebhookEventPsid,
    /// `dsr_requests.subject_ref`: who a data-subject request is about, kept until it completes.
    DsrSubject,
    /// `exports.payload`: a person's data export, kept until downloaded or expired.
    ExportPayload,
}

impl SealedField {
    /// Every field, to tell a value opened under the wrong field from a tampered one (and for
    /// the catalog's test that each is catalogued once).
    pub const ALL: [SealedField; 6] = [
        SealedField::SubscriberPsid,
        SealedField::SubscriberFirstName,
        SealedField::PageAccessToken,
        SealedField::WebhookEventPsid,
        SealedField::DsrSubject,
        SealedField::ExportPayload,
    ];

    /// The stable label authenticated with the value; changing one makes its column unreadable.
    pub const fn label(self) -> &'static str {
        match self {
            SealedField::SubscriberPsid => "subscriber.psid",
            SealedField::SubscriberFirstName => "subscriber.first_name",
            SealedField::PageAccessToken => "page.access_token",
            SealedField::WebhookEventPsid => "webhook_event.psid",
            SealedField::DsrSubject => "dsr_request.subject_ref",
            SealedField::ExportPayload => "export.payload",
        }
    }
}

impl fmt::Display for SealedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The data key a sealed value was sealed under, read from its header without decrypting; `None`
/// when the value is too short or of an unknown version. A key-rotation job uses it to find the
/// rows still sealed under an old key.
pub fn key_id_of(sealed: &[u8]) -> Option<i32> {
    if sealed.len() < MIN_SEALED_LEN || sealed[0] != VERSION {
        return None;
    }
    let id: [u8; 4] = sealed[1..HEADER_LEN].try_into().ok()?;
    Some(i32::from_be_bytes(id))
}

/// Additional authenticated data: the header, then the context label.
fn associated_data(header: &[u8], context: SealedField) -> Vec<u8> {
    [header, context.label().as_bytes()].concat()
}

/// Seals `plaintext` under `cipher`, the data key `key_id`, with a fresh random nonce.
pub(crate) fn seal(
    cipher: &XChaCha20Poly1305,
    key_id: i32,
    context: SealedField,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(MIN_SEALED_LEN + plaintext.len());
    sealed.push(VERSION);
    sealed.extend_from_slice(&key_id.to_be_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let aad = associated_data(&sealed[..HEADER_LEN], context);
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &aad,
            &mut sealed[HEADER_LEN + NONCE_LEN..],
        )
        .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
    sealed.extend_from_slice(&tag);
    sealed
}

/// Opens a sealed value; `cipher_for` finds the data key named in its header.
pub(crate) fn open<'k>(
    cipher_for: impl Fn(i32) -> Option<&'k XChaCha20Poly1305>,
    context: SealedField,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < MIN_SEALED_LEN {
        return Err(CryptoError::Truncated);
    }
    if sealed[0] != VERSION {
        return Err(CryptoError::UnsupportedVersion(sealed[0]));
    }
    let key_id = key_id_of(sealed).ok_or(CryptoError::Truncated)?;
    let cipher = cipher_for(key_id).ok_or(CryptoError::UnknownKey(key_id))?;
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let attempt = |context: SealedField| {
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                &associated_data(header, context),
                &mut buffer,
                Tag::from_slice(tag),
            )
            .ok()
            .map(|()| buffer)
    };
    if let Some(mut plaintext) = attempt(context) {
        return Ok(std::mem::take(&mut *plaintext));
    }
    match SealedField::ALL
        .into_iter()
        .filter(|other| *other != context)
        .find(|other| attempt(*other).is_some())
    {
        Some(found) => Err(CryptoError::WrongField {
            expected: context,
            found,
        }),
        None => Err(CryptoError::Tampered),
    }
}
