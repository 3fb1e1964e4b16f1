//! Data-subject rights carried out (GDPR Art. 15-21): who a request is about, everything held
//! about them as an export served once through an expiring link, erasure of every row about
//! them, and Facebook's signed data-deletion callback.

pub mod erasure;
pub mod export_link;
pub mod exports;
pub mod requests;
pub mod signed_request;
pub mod subject;
pub mod subject_data;

use serde::Deserialize;

/// The `privacy` section of the settings.
#[derive(Debug, Clone, Deserialize)]
pub struct PrivacySettings {
    /// How long an export's download link works; the export is deleted when it is downloaded or
    /// when this runs out, so a forgotten link does not keep a copy of someone's data around.
    pub export_ttl_days: u32,
}
