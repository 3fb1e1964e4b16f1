//! Blind indexes: a keyed hash of a Page's PSID, so a subscriber can be found by PSID while the
//! PSID itself is only stored sealed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Separates blind-index hashes from any other use of the pepper, and versions the input layout.
const DOMAIN: &[u8] = b"moonengage/psid-blind-index/v1\0";

/// HMAC-SHA256 keyed with the pepper, with the domain already absorbed; cloned for each index.
pub(crate) struct BlindIndexKey(Hmac<Sha256>);

impl BlindIndexKey {
    /// Keys the hash with the pepper; `None` only if HMAC refuses the key.
    pub(crate) fn new(pepper: &[u8]) -> Option<Self> {
        let mut mac = Hmac::<Sha256>::new_from_slice(pepper).ok()?;
        mac.update(DOMAIN);
        Some(Self(mac))
    }

    /// The 32-byte index of `psid` within the Page `page_fb_id`. The same PSID under two Pages
    /// gives unrelated indexes; a NUL separates the parts (neither contains one), so no two
    /// different pairs share an input.
    pub(crate) fn compute(&self, page_fb_id: &str, psid: &str) -> Vec<u8> {
        let mut mac = self.0.clone();
        mac.update(page_fb_id.as_bytes());
        mac.update(&[0]);
        mac.update(psid.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_separated_by_page_and_pepper() {
        let key = BlindIndexKey::new(&[7; 32]).unwrap();
        let other_pepper = BlindIndexKey::new(&[8; 32]).unwrap();

        let index = key.compute("1001", "2468");
        assert_eq!(index.len(), 32);
        assert_eq!(index, key.compute("1001", "2468"));
        assert_ne!(index, key.compute("1002", "2468"));
        assert_ne!(index, key.compute("1001", "2469"));
        assert_ne!(index, other_pepper.compute("1001", "2468"));
        assert_ne!(key.compute("10", "012"), key.compute("100", "12"));
    }
}
