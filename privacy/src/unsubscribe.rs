//! Signed unsubscribe tokens, carried by every message as a quick-reply payload and in a
//! `/u/{token}` link.
//!
//! A token holds internal numeric ids only (subscriber, Page, campaign), never personal data, and
//! is signed with HMAC-SHA256 so it cannot be forged or pointed at someone else. Its key id lets
//! keys rotate: the current key signs, every configured key verifies, so tokens already sent keep
//! working while an old key stays listed.
//!
//! Layout before base64url (no padding): `[version 1][key id][subscriber id][page id]
//! [campaign id][16-byte truncated HMAC of everything before it]`, ids as LEB128 varints.

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::Sha256;

use crate::crypto::decode_secret_base64;

/// Format version of a token.
const VERSION: u8 = 1;
/// Truncated HMAC length: 128 bits is beyond online guessing and keeps tokens short.
const TAG_LEN: usize = 16;
/// Longest body: version, key id and three ten-byte varints.
const MAX_BODY_LEN: usize = 2 + 3 * 10;
/// Longest token text; anything longer is refused before decoding.
const MAX_TOKEN_CHARS: usize = (MAX_BODY_LEN + TAG_LEN).div_ceil(3) * 4;
/// Separates these MACs from any other use of the same secret.
const MAC_DOMAIN: &[u8] = b"moonengage/unsubscribe-token/v1\0";
/// Marks a Messenger quick-reply or postback payload as an unsubscribe request.
const PAYLOAD_PREFIX: &str = "UNSUB:";

/// The `unsubscribe` section of the settings. `Debug` prints no secret.
#[derive(Clone, Debug, Deserialize)]
pub struct UnsubscribeSettings {
    /// Every key that verifies tokens; keep a retired key listed as long as messages signed with
    /// it may still be answered.
    /// In a file, a list of `{ id, secret }` tables; in one environment variable,
    /// `MOONENGAGE__UNSUBSCRIBE__KEYS=1:secret,2:secret`.
    #[serde(deserialize_with = "keys_from_list_or_text")]
    pub keys: Vec<UnsubscribeKey>,
    /// Id of the key that signs new tokens.
    pub current_key: u8,
    /// Set (e.g. `https://engage.example.com`) to put a `/u/{token}` link in every message; none
    /// means messages carry only the quick reply. The link points, like every link we send, at
    /// `Settings::public_base_url` (`web.public_base_url`, else this).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// Reads `unsubscribe.keys` as a list of tables (files) or `id:secret` pairs (environment, where
/// the config crate cannot express a list of tables).
fn keys_from_list_or_text<'de, D>(deserializer: D) -> Result<Vec<UnsubscribeKey>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        List(Vec<UnsubscribeKey>),
        Text(String),
    }
    match Keys::deserialize(deserializer)? {
        Keys::List(keys) => Ok(keys),
        Keys::Text(text) => text
            .split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| {
                let (id, secret) = pair.trim().split_once(':').ok_or_else(|| {
                    serde::de::Error::custom("expected `id:secret` pairs separated by commas")
                })?;
                let id = id
                    .parse()
                    .map_err(|_| serde::de::Error::custom("a key id must be a number 0-255"))?;
                Ok(UnsubscribeKey {
                    id,
                    secret: SecretString::from(secret.to_owned()),
                })
            })
            .collect(),
    }
}

/// One signing key of unsubscribe tokens.
#[derive(Clone, Debug, Deserialize)]
pub struct UnsubscribeKey {
    /// Written into each token, so verification picks the right key after a rotation.
    pub id: u8,
    /// Base64 of at least 32 random bytes.
    pub secret: SecretString,
}

/// An `unsubscribe` setting that is missing or invalid. The message never repeats a secret.
#[derive(Debug, thiserror::Error)]
pub enum UnsubscribeSettingsError {
    /// No key could sign or verify a token.
    #[error("at least one key is required")]
    NoKeys,
    /// Two keys share an id, so a token's key would be ambiguous.
    #[error("key id {0} is listed more than once")]
    DuplicateKeyId(u8),
    /// A secret is not base64 of enough random bytes.
    #[error("the secret of key {0} must be base64 of at least 32 random bytes")]
    InvalidSecret(u8),
    /// The signing key is not among the keys.
    #[error("key {0} is not listed in unsubscribe.keys")]
    UnknownCurrentKey(u8),
    /// The link base is not an http(s) URL.
    #[error("must be an http:// or https:// URL")]
    InvalidBaseUrl,
}

impl UnsubscribeSettingsError {
    /// The dotted settings key at fault, so start-up errors can name it.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoKeys | Self::DuplicateKeyId(_) | Self::InvalidSecret(_) => "unsubscribe.keys",
            Self::UnknownCurrentKey(_) => "unsubscribe.current_key",
            Self::InvalidBaseUrl => "unsubscribe.base_url",
        }
    }
}

impl UnsubscribeSettings {
    /// Checks the settings, so a process fails at start with the offending key named.
    pub fn validate(&self) -> Result<(), UnsubscribeSettingsError> {
        UnsubscribeSigner::new(self).map(drop)
    }
}

/// What a token says: who unsubscribes from which Page, and the campaign that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeClaims {
    /// `subscribers.id`.
    pub subscriber_id: i64,
    /// `pages.id`; checked against the subscriber's Page, so a token cannot act on another Page.
    pub page_id: i64,
    /// `campaigns.id` for attribution, 0 for none.
    pub campaign_id: i64,
}

/// Why a token was refused; the web page and webhook answer each the same way, but logs tell
/// them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of ours: bad base64, wrong length or version, or bad ids.
    #[error("unsubscribe token is malformed")]
    Malformed,
    /// Signed with a key that is not (or no longer) configured.
    #[error("unsubscribe token was signed with unknown key {0}")]
    UnknownKey(u8),
    /// The signature does not match: altered or forged.
    #[error("unsubscribe token signature is invalid")]
    BadSignature,
}

/// Signs and verifies unsubscribe tokens with the configured keys.
#[derive(Clone)]
pub struct UnsubscribeSigner {
    current_id: u8,
    current: Hmac<Sha256>,
    /// Every key, the current one included, keyed and with the domain absorbed.
    keys: HashMap<u8, Hmac<Sha256>>,
}

impl UnsubscribeSigner {
    /// Validates the settings and prepares the keys.
    pub fn new(settings: &UnsubscribeSettings) -> Result<Self, UnsubscribeSettingsError> {
        if settings.keys.is_empty() {
            return Err(UnsubscribeSettingsError::NoKeys);
        }
        let mut seen = HashSet::new();
        let mut keys = HashMap::new();
        for key in &settings.keys {
            if !seen.insert(key.id) {
                return Err(UnsubscribeSettingsError::DuplicateKeyId(key.id));
            }
            let mac = decode_secret_base64(&key.secret)
                .and_then(|secret| Hmac::<Sha256>::new_from_slice(&secret).ok())
                .ok_or(UnsubscribeSettingsError::InvalidSecret(key.id))?;
            keys.insert(key.id, {
                let mut mac = mac;
                mac.update(MAC_DOMAIN);
                mac
            });
        }
        let current = keys.get(&settings.current_key).cloned().ok_or(
            UnsubscribeSettingsError::UnknownCurrentKey(settings.current_key),
        )?;
        if settings
            .base_url
            .as_deref()
            .is_some_and(|url| !(url.starts_with("https://") || url.starts_with("http://")))
        {
            return Err(UnsubscribeSettingsError::InvalidBaseUrl);
        }
        Ok(Self {
            current_id: settings.current_key,
            current,
            keys,
        })
    }

    /// A token for `claims`, signed with the current key: base64url, about 35 characters.
    pub fn sign(&self, claims: &UnsubscribeClaims) -> String {
        let mut bytes = Vec::with_capacity(MAX_BODY_LEN + TAG_LEN);
        bytes.extend_from_slice(&[VERSION, self.current_id]);
        for id in [claims.subscriber_id, claims.page_id, claims.campaign_id] {
            put_varint(&mut bytes, u64::from_be_bytes(id.to_be_bytes()));
        }
        let mut mac = self.current.clone();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claims of a token this deployment signed with any configured key; the signature is
    /// checked in constant time before anything in the body is trusted.
    pub fn verify(&self, token: &str) -> Result<UnsubscribeClaims, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < 2 + 3 + TAG_LEN || bytes.len() > MAX_BODY_LEN + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        if bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let key = self
            .keys
            .get(&bytes[1])
            .ok_or(TokenError::UnknownKey(bytes[1]))?;
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = key.clone();
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| TokenError::BadSignature)?;

        let mut ids = &body[2..];
        let mut next = || {
            read_varint(&mut ids)
                .map(|id| i64::from_be_bytes(id.to_be_bytes()))
                .ok_or(TokenError::Malformed)
        };
        let claims = UnsubscribeClaims {
            subscriber_id: next()?,
            page_id: next()?,
            campaign_id: next()?,
        };
        if !ids.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

impl fmt::Debug for UnsubscribeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<u8> = self.keys.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("UnsubscribeSigner")
            .field("current_key", &self.current_id)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

/// The quick-reply (or postback) payload that carries `token`, so the webhook can recognise an
/// unsubscribe tap.
pub fn payload(token: &str) -> String {
    format!("{PAYLOAD_PREFIX}{token}")
}

/// The token inside an unsubscribe payload, or `None` for any other payload.
pub fn token_from_payload(payload: &str) -> Option<&str> {
    payload.strip_prefix(PAYLOAD_PREFIX)
}

/// Appends `value` as an LEB128 varint: small ids take few bytes.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one canonical LEB128 varint (shortest form, at most 64 bits) from the front of `input`.
fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return None;
            }
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
