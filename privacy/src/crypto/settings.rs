//! The `crypto` settings: who can unwrap data keys, who new data keys are wrapped to, and the
//! pepper of blind indexes.

use std::collections::HashSet;
use std::time::Duration;

use age::x25519::{Identity, Recipient};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::blind_index::BlindIndexKey;

/// Fewest random bytes accepted for a secret key: 256 bits.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// The `crypto` section of the settings. `Debug` prints no secret.
#[derive(Clone, Debug, Deserialize)]
pub struct CryptoSettings {
    /// age X25519 identities (`AGE-SECRET-KEY-1…`) that unwrap the data keys. Several let an
    /// operator add a new identity before retiring an old one. New data keys are always wrapped
    /// to the public keys of all of them.
    pub age_identities: Vec<SecretString>,
    /// Extra age public keys (`age1…`) every new data key is also wrapped to, such as an offline
    /// recovery key, so the data survives the loss of every online identity.
    #[serde(default)]
    pub age_recipients: Vec<String>,
    /// Base64 of at least 32 random bytes: the secret pepper of blind indexes, so that someone
    /// holding only the database cannot look up a known PSID.
    pub blind_index_key: SecretString,
    /// How often every process re-reads `data_keys`, so one started before a key rotation learns
    /// the new data key. A new data key seals nothing until two of these intervals have passed,
    /// so every running process can open values under it before any is written.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
}

/// Five seconds: a rotation waits a few of these, and the query is a few rows.
fn default_refresh_ms() -> u64 {
    5_000
}

/// A `crypto` setting that is missing or invalid. The message never repeats a secret.
#[derive(Debug, thiserror::Error)]
pub enum CryptoSettingsError {
    /// Without an identity no data key could ever be unwrapped.
    #[error("at least one age identity (AGE-SECRET-KEY-1…) is required")]
    NoIdentity,
    /// An entry of `crypto.age_identities` does not parse.
    #[error("entry {index} (from 0) is not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    InvalidIdentity {
        /// Position in the list.
        index: usize,
    },
    /// An entry of `crypto.age_recipients` does not parse.
    #[error("entry {index} (from 0) is not an age X25519 recipient (age1…): {reason}")]
    InvalidRecipient {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `crypto.blind_index_key` is not base64 of enough random bytes.
    #[error("must be base64 of at least {MIN_SECRET_BYTES} random bytes")]
    InvalidBlindIndexKey,
    /// `crypto.refresh_ms` is zero: no process would ever learn of a rotation.
    #[error("must be at least 1")]
    InvalidRefresh,
}

impl CryptoSettingsError {
    /// The dotted settings key at fault, so start-up errors can name it.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoIdentity | Self::InvalidIdentity { .. } => "crypto.age_identities",
            Self::InvalidRecipient { .. } => "crypto.age_recipients",
            Self::InvalidBlindIndexKey => "crypto.blind_index_key",
            Self::InvalidRefresh => "crypto.refresh_ms",
        }
    }
}

/// The settings in the form the keyring uses.
pub(crate) struct ParsedSettings {
    /// Tried in order to unwrap each data key.
    pub(crate) identities: Vec<Identity>,
    /// Every new data key is wrapped to all of these: the identities' public keys, then the extra
    /// recipients, without duplicates.
    pub(crate) recipients: Vec<Recipient>,
    /// The keyed pepper of blind indexes.
    pub(crate) blind_index: BlindIndexKey,
}

impl CryptoSettings {
    /// How often every process re-reads `data_keys`.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_ms)
    }

    /// How long after its creation a data key becomes the one that seals: two refresh
    /// intervals, by which time every running process has loaded it and can open its values.
    pub fn activation_delay(&self) -> Duration {
        self.refresh_interval() * 2
    }

    /// When a rotation to a new data key may consider itself complete: once the key is active
    /// and every process has had another refresh interval to start sealing with it, no process
    /// writes values under an older key any more.
    pub fn settle_delay(&self) -> Duration {
        self.activation_delay() + self.refresh_interval() * 2
    }

    /// Checks the settings without touching the database, so a process fails at start with the
    /// offending key named.
    pub fn validate(&self) -> Result<(), CryptoSettingsError> {
        self.parse().map(drop)
    }

    /// Parses every key.
    pub(crate) fn parse(&self) -> Result<ParsedSettings, CryptoSettingsError> {
        if self.age_identities.is_empty() {
            return Err(CryptoSettingsError::NoIdentity);
        }
        if self.refresh_ms == 0 {
            return Err(CryptoSettingsError::InvalidRefresh);
        }
        let identities = self
            .age_identities
            .iter()
            .enumerate()
            .map(|(index, identity)| {
                identity
                    .expose_secret()
                    .trim()
                    .parse::<Identity>()
                    .map_err(|_| CryptoSettingsError::InvalidIdentity { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let extra = self
            .age_recipients
            .iter()
            .enumerate()
            .map(|(index, recipient)| {
                parse_recipient(recipient)
                    .map_err(|reason| CryptoSettingsError::InvalidRecipient { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        let recipients = identities
            .iter()
            .map(Identity::to_public)
            .chain(extra)
            .filter(|recipient| seen.insert(recipient.clone()))
            .collect();
        let blind_index = decode_secret_base64(&self.blind_index_key)
            .and_then(|pepper| BlindIndexKey::new(&pepper))
            .ok_or(CryptoSettingsError::InvalidBlindIndexKey)?;
        Ok(ParsedSettings {
            identities,
            recipients,
            blind_index,
        })
    }
}

/// Parses an `age1…` public key, refusing a secret key pasted in the wrong list without echoing
/// it.
fn parse_recipient(value: &str) -> Result<Recipient, &'static str> {
    let value = value.trim();
    if value.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err("this is a secret key; list it in crypto.age_identities instead");
    }
    value.parse()
}

/// Base64 with either alphabet's padding optional, so keys pasted from `openssl rand -base64 32`
/// or a URL-safe generator both work.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a configured secret key (base64 of at least 32 random bytes); `None` when it is not
/// base64 or too short. Shared by every setting that holds a symmetric key.
pub(crate) fn decode_secret_base64(value: &SecretString) -> Option<Zeroizing<Vec<u8>>> {
    let text = value.expose_secret().trim();
    let bytes = STANDARD_LENIENT
        .decode(text)
        .or_else(|_| URL_SAFE_LENIENT.decode(text))
        .ok()
        .map(Zeroizing::new)?;
    (bytes.len() >= MIN_SECRET_BYTES).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER: &str = "c2VjcmV0LXBlcHBlci1mb3ItdGVzdHMtMzItYnl0ZXMhIQ==";

    fn settings() -> (CryptoSettings, String) {
        let identity = Identity::generate();
        let secret = identity.to_string().expose_secret().to_owned();
        let recovery = Identity::generate().to_public().to_string();
        (
            CryptoSettings {
                age_identities: vec![SecretString::from(secret.clone())],
                age_recipients: vec![recovery],
                blind_index_key: SecretString::from(PEPPER),
                refresh_ms: 5_000,
            },
            secret,
        )
    }

    #[test]
    fn debug_shows_no_secret() {
        let (settings, secret) = settings();
        let shown = format!("{settings:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");
        assert!(!shown.contains(PEPPER), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn valid_settings_wrap_to_identities_and_extra_recipients() {
        let (settings, _) = settings();
        let parsed = settings.parse().unwrap();
        assert_eq!(parsed.identities.len(), 1);
        assert_eq!(parsed.recipients.len(), 2);
    }

    #[test]
    fn a_recipient_of_an_identity_is_not_listed_twice() {
        let (mut settings, secret) = settings();
        let own = secret.parse::<Identity>().unwrap().to_public().to_string();
        settings.age_recipients = vec![own];
        assert_eq!(settings.parse().unwrap().recipients.len(), 1);
    }

    #[test]
    fn errors_name_the_setting() {
        let (good, secret) = settings();

        let mut s = good.clone();
        s.age_identities.clear();
        assert_eq!(s.validate().unwrap_err().key(), "crypto.age_identities");

        let mut s = good.clone();
        s.age_identities
            .push(SecretString::from("AGE-SECRET-KEY-1NOPE"));
        let err = s.validate().unwrap_err();
        assert_eq!(err.key(), "crypto.age_identities");
        assert!(err.to_string().contains("entry 1"), "{err}");

        let mut s = good.clone();
        s.age_recipients = vec![secret.clone()];
        let err = s.validate().unwrap_err();
        assert_eq!(err.key(), "crypto.age_recipients");
        assert!(!err.to_string().contains(&secret), "{err}");

        let mut s = good.clone();
        s.refresh_ms = 0;
        assert_eq!(s.validate().unwrap_err().key(), "crypto.refresh_ms");

        for pepper in ["", "not base64!", "c2hvcnQ="] {
            let mut s = good.clone();
            s.blind_index_key = SecretString::from(pepper);
            assert_eq!(s.validate().unwrap_err().key(), "crypto.blind_index_key");
        }
    }

    #[test]
    fn secrets_decode_from_either_base64_alphabet_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|b| b.wrapping_mul(37).wrapping_add(250))
            .collect();
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let text = SecretString::from(engine.encode(&bytes));
            assert_eq!(decode_secret_base64(&text).unwrap().as_slice(), bytes);
        }
    }
}
