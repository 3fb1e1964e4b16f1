//! Names: a person who opts in has their first name fetched from Facebook's User Profile API by
//! a queued job — never while the webhook waits — at the Page's rate, and stored sealed, so
//! templates can greet them with `{{first_name}}`. Until it arrives (or if Facebook gives none)
//! templates use their fallback.

use moonengage_queue::Job;
use serde::{Deserialize, Serialize};

/// Fetch and store one person's first name. Ids only: the subscriber row holds the PSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileJob {
    /// The person.
    pub subscriber_id: i64,
}

impl Job for ProfileJob {
    const KIND: &'static str = "profile";

    fn key(&self) -> String {
        self.subscriber_id.to_string()
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}
