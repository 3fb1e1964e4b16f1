//! Notifications to admins: what happened, as a queued e-mail job. Queuing (not sending) keeps
//! the caller fast and lets a notification commit with the change it reports; the e-mail job
//! retries until the SMTP server takes it. Events carry ids only: an admin e-mail says which
//! request, Page or campaign, never who a person is or what they wrote.

use serde::{Deserialize, Serialize};

use moonengage_queue::{Job, jobs};

/// Something admins must hear about. The payload of an e-mail job: ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AdminEvent {
    /// A data-subject request was filed; the clock of its 30 days started.
    DsrReceived {
        /// `dsr_requests.id`.
        request_id: i64,
    },
    /// A data-subject request was carried out or refused.
    DsrCompleted {
        /// `dsr_requests.id`.
        request_id: i64,
    },
    /// A data-subject request is close to its deadline and still open.
    DsrDueSoon {
        /// `dsr_requests.id`.
        request_id: i64,
    },
    /// Facebook refuses a Page for good (token, permission, block): it sends nothing until an
    /// admin fixes it and resumes it.
    PageHalted {
        /// `pages.id`.
        page_id: i64,
        /// The campaigns the halt paused; they resume with the Page.
        paused_campaigns: Vec<i64>,
        /// When it happened (Unix ms): a Page halted, resumed and halted again is two events.
        at_ms: i64,
    },
    /// A personal-data breach was declared: the 72 hours to inform the authority run.
    IncidentDeclared {
        /// `incidents.id`.
        incident_id: i64,
    },
    /// An incident's deadline to inform the authority is near and it is not reported yet.
    IncidentDeadlineNear {
        /// `incidents.id`.
        incident_id: i64,
    },
    /// A campaign finished: every recipient has an outcome.
    CampaignCompleted {
        /// `campaigns.id`.
        campaign_id: i64,
    },
    /// A campaign finished without reaching anybody: it had recipients to send to and every
    /// send failed.
    CampaignFailed {
        /// `campaigns.id`.
        campaign_id: i64,
    },
}

impl Job for AdminEvent {
    const KIND: &'static str = "email";

    /// An admin e-mail is never dropped: it waits out an SMTP outage at the capped backoff.
    const MAX_ATTEMPTS: Option<i32> = Some(i32::MAX);

    /// Each event is e-mailed once, however often it is reported.
    fn key(&self) -> String {
        match self {
            AdminEvent::DsrReceived { request_id } => format!("dsr_received:{request_id}"),
            AdminEvent::DsrCompleted { request_id } => format!("dsr_completed:{request_id}"),
            AdminEvent::DsrDueSoon { request_id } => format!("dsr_due_soon:{request_id}"),
            AdminEvent::PageHalted { page_id, at_ms, .. } => {
                format!("page_halted:{page_id}:{at_ms}")
            }
            AdminEvent::IncidentDeclared { incident_id } => {
                format!("incident_declared:{incident_id}")
            }
            AdminEvent::IncidentDeadlineNear { incident_id } => {
                format!("incident_deadline_near:{incident_id}")
            }
            AdminEvent::CampaignCompleted { campaign_id } => {
                format!("campaign_completed:{campaign_id}")
            }
            AdminEvent::CampaignFailed { campaign_id } => {
                format!("campaign_failed:{campaign_id}")
            }
        }
    }
}

impl AdminEvent {
    /// Stable name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            AdminEvent::DsrReceived { .. } => "dsr_received",
            AdminEvent::DsrCompleted { .. } => "dsr_completed",
            AdminEvent::DsrDueSoon { .. } => "dsr_due_soon",
            AdminEvent::PageHalted { .. } => "page_halted",
            AdminEvent::IncidentDeclared { .. } => "incident_declared",
            AdminEvent::IncidentDeadlineNear { .. } => "incident_deadline_near",
            AdminEvent::CampaignCompleted { .. } => "campaign_completed",
            AdminEvent::CampaignFailed { .. } => "campaign_failed",
        }
    }
}

/// Queues an admin e-mail about `event`. Pass the transaction of the change being reported, so
/// the e-mail is queued if and only if the change commits. Returns whether a job was added
/// (false: this event was queued before).
pub async fn admin<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    event: AdminEvent,
) -> anyhow::Result<bool> {
    jobs::enqueue(executor, &event, i32::MAX).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_ids_only_and_keys_differ_per_event() {
        let event = AdminEvent::PageHalted {
            page_id: 3,
            paused_campaigns: vec![7, 8],
            at_ms: 1,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"event": "page_halted", "page_id": 3, "paused_campaigns": [7, 8], "at_ms": 1})
        );
        assert_ne!(
            AdminEvent::DsrReceived { request_id: 1 }.key(),
            AdminEvent::DsrCompleted { request_id: 1 }.key()
        );
    }
}
