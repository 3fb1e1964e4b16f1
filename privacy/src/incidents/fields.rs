//! What the register records of an incident, as closed sets: its status with the authority and
//! the categories of data it exposed, with their stored names.

use serde::{Deserialize, Serialize};

use super::IncidentError;

/// Where an incident stands with the supervisory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Declared; the authority is not informed yet (the 72-hour clock runs).
    Open,
    /// The authority was informed.
    Reported,
    /// Dealt with; nothing more to do.
    Closed,
}

impl IncidentStatus {
    /// As `incidents.status` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Reported => "reported",
            IncidentStatus::Closed => "closed",
        }
    }

    pub(super) fn parse(value: &str) -> anyhow::Result<IncidentStatus> {
        Ok(match value {
            "open" => IncidentStatus::Open,
            "reported" => IncidentStatus::Reported,
            "closed" => IncidentStatus::Closed,
            other => anyhow::bail!("unknown incident status {other}"),
        })
    }
}

impl std::str::FromStr for IncidentStatus {
    type Err = IncidentError;

    fn from_str(value: &str) -> Result<IncidentStatus, IncidentError> {
        IncidentStatus::parse(value).map_err(|_| IncidentError::Invalid {
            field: "status",
            reason: "must be open, reported or closed".into(),
        })
    }
}

/// A category of personal data an incident may have exposed: what we hold (see the privacy
/// page), so the notice can say what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataCategory {
    /// Page-scoped Messenger ids.
    MessengerIds,
    /// First names.
    FirstNames,
    /// Opt-in evidence (when, how).
    ConsentEvidence,
    /// Which campaigns reached whom.
    DeliveryRecords,
    /// Data-subject requests.
    DataRequests,
    /// Page access tokens (business data, but a breach of them lets others message people).
    PageTokens,
}

impl DataCategory {
    /// Every category, in the order the notice lists them.
    pub const ALL: [DataCategory; 6] = [
        DataCategory::MessengerIds,
        DataCategory::FirstNames,
        DataCategory::ConsentEvidence,
        DataCategory::DeliveryRecords,
        DataCategory::DataRequests,
        DataCategory::PageTokens,
    ];

    /// As `incidents.categories` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::MessengerIds => "messenger_ids",
            DataCategory::FirstNames => "first_names",
            DataCategory::ConsentEvidence => "consent_evidence",
            DataCategory::DeliveryRecords => "delivery_records",
            DataCategory::DataRequests => "data_requests",
            DataCategory::PageTokens => "page_tokens",
        }
    }

    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            DataCategory::MessengerIds => "your Messenger id for the Page",
            DataCategory::FirstNames => "your first name",
            DataCategory::ConsentEvidence => "when and how you subscribed",
            DataCategory::DeliveryRecords => "which messages were sent to you",
            DataCategory::DataRequests => "your requests about your data",
            DataCategory::PageTokens => "the Page's access to Messenger",
        }
    }
}

impl std::str::FromStr for DataCategory {
    type Err = IncidentError;

    fn from_str(value: &str) -> Result<DataCategory, IncidentError> {
        DataCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| IncidentError::Invalid {
                field: "categories",
                reason: format!(
                    "`{value}` is not one of {}",
                    DataCategory::ALL.map(DataCategory::as_str).join(", ")
                ),
            })
    }
}
