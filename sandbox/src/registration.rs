//! What the control API registers: Pages with their tokens, people's profiles, and the ids the
//! ID Matching API answers — the sandbox's stand-ins for what Facebook knows.

use serde::Deserialize;

/// A Page and the access token that sends as it (`POST /_sandbox/pages`).
#[derive(Debug, Clone, Deserialize)]
pub struct PageRegistration {
    /// The Page id the token resolves to.
    pub page_id: String,
    /// The Page access token the backend will use.
    pub access_token: String,
    /// The Page name answered by `GET /v{N}/me`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A person's profile as the User Profile API should answer it (`POST /_sandbox/profiles`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileRegistration {
    /// The person's page-scoped id.
    pub psid: String,
    /// The first name answered for `fields=first_name`.
    pub first_name: String,
}

/// The Page-scoped ids Facebook's ID Matching API answers for an app-scoped user id
/// (`POST /_sandbox/ids-for-pages`).
#[derive(Debug, Clone, Deserialize)]
pub struct IdMappingRegistration {
    /// The app-scoped user id the data-deletion callback names.
    pub app_scoped_id: String,
    /// The person's ids on the Pages of the business.
    pub pages: Vec<PageScopedId>,
}

/// One Page-scoped id of a person.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct PageScopedId {
    /// The Page.
    pub page_id: String,
    /// The person's PSID on it.
    pub psid: String,
}
