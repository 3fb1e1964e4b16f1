//! A campaign's life as stored (`campaigns.state`).

use serde::Serialize;

/// Where a campaign is in its life (`campaigns.state`; the SQL of this crate, the queue and the
/// scheduler names the same values): `draft → scheduled → running ⇄ paused → completed`, or
/// `cancelled` from any state before `completed`. Serialized as the stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CampaignState {
    /// Created, not scheduled yet.
    Draft,
    /// Waiting for its start time.
    Scheduled,
    /// Being fanned out and sent.
    Running,
    /// Stopped by an admin or its Page's halt ([`PausedBy`]); nothing is claimed from it.
    Paused,
    /// Every recipient has an outcome.
    Completed,
    /// Cancelled: what was not sent is recorded as skipped.
    Cancelled,
}

impl CampaignState {
    /// Every state, in the order of a campaign's life.
    pub const ALL: [CampaignState; 6] = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for CampaignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CampaignState {
    type Err = anyhow::Error;

    /// Reads a state the queue's claim returned as text.
    fn from_str(value: &str) -> anyhow::Result<CampaignState> {
        crate::stored::parse(
            &CampaignState::ALL,
            CampaignState::as_str,
            "campaign state",
            value,
        )
    }
}
