//! What the sandbox remembers about the traffic it received, in the form tests read it: the
//! accepted messages and the counters behind `/_sandbox/stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One message the sandbox accepted (answered with, or hung after, a `message_id`), so tests can
/// check exactly what a person would have seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// The Page the message was sent as (from the access token).
    pub page_id: String,
    /// The recipient's page-scoped id.
    pub psid: String,
    /// The message text.
    pub text: String,
    /// The quick replies offered with the message, in order.
    pub quick_replies: Vec<QuickReply>,
    /// `RESPONSE`, `UPDATE` or `MESSAGE_TAG`.
    pub messaging_type: String,
    /// The message tag, when `messaging_type` is `MESSAGE_TAG`.
    pub tag: Option<String>,
    /// The `message_id` the sandbox answered with (`m_…`, unique).
    pub message_id: String,
    /// When the sandbox accepted the message, in Unix milliseconds.
    pub received_at_ms: u64,
}

/// A text quick reply as sent, so tests can check the buttons a person would tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// The button label (at most 20 characters).
    pub title: String,
    /// The payload posted back when the person taps it.
    pub payload: String,
}

/// Which received messages to list; `None` (or an empty string over HTTP) matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MessageFilter {
    /// Only messages sent as this Page.
    pub page_id: Option<String>,
    /// Only messages to this PSID.
    pub psid: Option<String>,
}

impl MessageFilter {
    /// Whether `message` passes the filter.
    pub(crate) fn matches(&self, message: &ReceivedMessage) -> bool {
        fn field_matches(wanted: &Option<String>, actual: &str) -> bool {
            wanted
                .as_deref()
                .is_none_or(|w| w.is_empty() || w == actual)
        }
        field_matches(&self.page_id, &message.page_id) && field_matches(&self.psid, &message.psid)
    }
}

/// Counters over all Send API traffic since start or the last reset; cheap to read even with
/// hundreds of thousands of messages recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages accepted (recorded), all Pages together.
    pub received_total: u64,
    /// Per-Page counters, for every Page that received at least one Send call.
    pub by_page: BTreeMap<String, PageStats>,
    /// How many distinct (Page, PSID, text) triples were accepted more than once: duplicates a
    /// person would have seen.
    pub duplicates: u64,
    /// Send API requests received, whatever their outcome (Profile lookups are not counted).
    pub requests_total: u64,
}

/// Send API counters for one Page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageStats {
    /// Messages accepted (recorded) for the Page.
    pub received: u64,
    /// Refused Send calls by error code (`"613"`, `"100"`, …; `"http_503"` for injected 503s).
    pub rejected: BTreeMap<String, u64>,
    /// The most messages accepted for the Page within any sliding one-second window (measured
    /// at each acceptance over the preceding second).
    pub max_per_second: u64,
}
