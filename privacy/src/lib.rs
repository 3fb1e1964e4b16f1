//! Everything that protects the people who message a Page: envelope encryption of their data
//! (sealing, the keyring, blind indexes, key rotation), the signed unsubscribe token of every
//! message, data-subject requests with their export and erasure, policy versions and the
//! notices that announce them, the breach register, and the catalog of every table and column
//! that holds personal data, which erasure, export, retention and rotation all read.

pub mod catalog;
pub mod crypto;
pub mod dsr;
pub mod erasure;
pub mod export_link;
pub mod exports;
pub mod incidents;
pub mod policy;
pub mod requests;
pub mod rotation;
pub mod subject;
pub mod subject_data;
pub mod unsubscribe;

use serde::Deserialize;

/// The `privacy` section of the settings.
#[derive(Debug, Clone, Deserialize)]
pub struct PrivacySettings {
    /// How long an export's download link works; the export is deleted when it is downloaded or
    /// when this runs out, so a forgotten link does not keep a copy of someone's data around.
    pub export_ttl_days: u32,
}
