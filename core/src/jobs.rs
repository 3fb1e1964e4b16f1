//! The kinds of queued jobs other than sends (those are deliveries, see `moonengage_queue`):
//! each payload carries ids only — job rows are not encrypted and outlive their work, so a
//! PSID, a name or a text never goes in here — and says its stable kind name and unique key.
//! The worker says how each runs; anyone may queue them (`moonengage_queue::jobs::enqueue`).

use moonengage_accounts::alerts::AccountAlert;
use moonengage_accounts::cancellation::CancelJob;
use moonengage_accounts::invitations::InvitationJob;
use moonengage_ops::alerts::AdminEvent;
use moonengage_privacy::dsr::DsrJob;
use moonengage_privacy::export_link::ExportLinkJob;
use moonengage_privacy::incidents::IncidentNoticeJob;
use moonengage_privacy::policy::PolicyNoticeJob;
use moonengage_privacy::rotation::RotateJob;
use moonengage_queue::{Job, events, sends};
use serde::{Deserialize, Serialize};

use crate::profile::ProfileJob;

/// Every queue: the kind of each job, sends first. Metrics create a series for each at start
/// and the scheduler's gauges report each, so a dashboard shows an idle queue as 0, not as
/// missing.
pub const QUEUES: &[&str] = &[
    sends::KIND,
    events::KIND,
    DsrJob::KIND,
    NotifyJob::KIND,
    AdminEvent::KIND,
    PolicyNoticeJob::KIND,
    ProfileJob::KIND,
    ExportLinkJob::KIND,
    IncidentNoticeJob::KIND,
    RotateJob::KIND,
    AccountAlert::KIND,
    InvitationJob::KIND,
    CancelJob::KIND,
];

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
    }
}
