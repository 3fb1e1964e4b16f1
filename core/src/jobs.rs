//! The kinds of queued jobs other than sends (those are deliveries, see `moonengage_queue`):
//! each payload carries ids only — job rows are not encrypted and outlive their work, so a
//! PSID, a name or a text never goes in here — and says its stable kind name and unique key.
//! The worker says how each runs; anyone may queue them (`moonengage_queue::jobs::enqueue`).

use moonengage_queue::Job;
use serde::{Deserialize, Serialize};

/// One data-subject request to carry out; the request's row holds the rest (sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsrJob {
    /// `dsr_requests.id`.
    pub request_id: i64,
}

impl Job for DsrJob {
    const KIND: &'static str = "dsr";

    fn key(&self) -> String {
        self.request_id.to_string()
    }
}

/// Which service message a notify job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// Confirms that the person is unsubscribed and will get no more campaign messages.
    Unsubscribed,
}

/// What prompted a service message: with the person, it makes the job's key, so the same cause
/// tells them once while a later cause (another STOP) tells them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "id")]
pub enum Cause {
    /// A webhook event (`webhook_events.id`).
    Event(i64),
    /// A data-subject request (`dsr_requests.id`).
    Request(i64),
}

/// One service message to one person, by internal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyJob {
    /// The recipient.
    pub subscriber_id: i64,
    /// What to tell them.
    pub kind: NotifyKind,
    /// Why now.
    pub cause: Cause,
}

impl Job for NotifyJob {
    const KIND: &'static str = "notify";

    fn key(&self) -> String {
        match self.cause {
            Cause::Event(id) => format!("event:{id}"),
            Cause::Request(id) => format!("dsr:{id}"),
        }
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}

/// One step of a key rotation: re-seal, in batches, what is still sealed under an older data key,
/// resuming at a position; the step queues the next one until nothing is left. Ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateJob {
    /// The data key everything is re-sealed under.
    pub key_id: i32,
    /// Steps before this one: with the key id, the unique key, so each step is queued once.
    pub step: u32,
    /// Index into `key_rotation::SEALED_COLUMNS` where this step resumes.
    pub column: usize,
    /// The last row id already handled in that column.
    pub after_id: i64,
}

impl RotateJob {
    /// The first step of a rotation to `key_id`.
    pub fn start(key_id: i32) -> RotateJob {
        RotateJob {
            key_id,
            step: 0,
            column: 0,
            after_id: 0,
        }
    }
}

impl Job for RotateJob {
    const KIND: &'static str = "rotate";

    fn key(&self) -> String {
        format!("{}:{}", self.key_id, self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_causes_apart_and_payloads_carry_ids_only() {
        let by_event = NotifyJob {
            subscriber_id: 7,
            kind: NotifyKind::Unsubscribed,
            cause: Cause::Event(3),
        };
        let by_request = NotifyJob {
            cause: Cause::Request(3),
            ..by_event
        };
        assert_ne!(by_event.key(), by_request.key());
        assert_eq!(
            serde_json::to_value(by_event).unwrap(),
            serde_json::json!({"subscriber_id": 7, "kind": "unsubscribed", "cause": {"by": "event", "id": 3}})
        );
        assert_eq!(RotateJob::start(2).key(), "2:0");
    }
}
