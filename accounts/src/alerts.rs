//! E-mail alerts to account holders about changes to their accounts and workspaces, so a
//! change they did not make is noticed. Queued as `account_alert` jobs in the transaction of
//! the change (an alert exists if and only if the change committed); payloads carry ids only,
//! and the worker looks the recipients' addresses up when it sends.

use serde::{Deserialize, Serialize};

use moonengage_queue::{Job, jobs};

/// A change account holders must hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum AccountAlert {
    /// The user's password was set or changed.
    PasswordChanged {
        /// `users.id`.
        user_id: i64,
        /// When (Unix ms): each change is its own alert.
        at_ms: i64,
    },
    /// The user's login e-mail was changed.
    EmailChanged {
        /// `users.id`.
        user_id: i64,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// A personal API token was created for the user.
    TokenCreated {
        /// `users.id`.
        user_id: i64,
        /// `api_tokens.id`.
        token_id: i64,
    },
    /// Someone joined a workspace (the workspace's owners and the new member hear of it).
    MemberAdded {
        /// `workspaces.id`.
        workspace_id: i64,
        /// The new member's `users.id`.
        user_id: i64,
    },
    /// A member's role changed.
    RoleChanged {
        /// `workspaces.id`.
        workspace_id: i64,
        /// The member's `users.id`.
        user_id: i64,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// The user logged in from an origin (network and browser) not seen in their activity.
    NewOrigin {
        /// `users.id`.
        user_id: i64,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// An owner granted an operator maintenance access.
    MaintenanceGranted {
        /// `workspaces.id`.
        workspace_id: i64,
        /// The grant's id.
        grant_id: i64,
    },
    /// An operator used maintenance access for the first time.
    MaintenanceUsed {
        /// `workspaces.id`.
        workspace_id: i64,
        /// The grant's id.
        grant_id: i64,
    },
    /// Maintenance access was revoked or ran out.
    MaintenanceEnded {
        /// `workspaces.id`.
        workspace_id: i64,
        /// The grant's id.
        grant_id: i64,
    },
}

impl AccountAlert {
    /// Stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            AccountAlert::PasswordChanged { .. } => "password_changed",
            AccountAlert::EmailChanged { .. } => "email_changed",
            AccountAlert::TokenCreated { .. } => "token_created",
            AccountAlert::MemberAdded { .. } => "member_added",
            AccountAlert::RoleChanged { .. } => "role_changed",
            AccountAlert::NewOrigin { .. } => "new_origin",
            AccountAlert::MaintenanceGranted { .. } => "maintenance_granted",
            AccountAlert::MaintenanceUsed { .. } => "maintenance_used",
            AccountAlert::MaintenanceEnded { .. } => "maintenance_ended",
        }
    }
}

impl Job for AccountAlert {
    const KIND: &'static str = "account_alert";

    /// An alert is never dropped: it waits out an SMTP outage at the capped backoff.
    const MAX_ATTEMPTS: Option<i32> = Some(i32::MAX);

    /// Each alert is sent once, however often it is queued: the payload is its identity.
    fn key(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.name().to_owned())
    }
}

/// Queues an alert. Pass the transaction of the change, so the alert is queued if and only if
/// the change commits. Returns whether a job was added.
pub async fn alert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    alert: AccountAlert,
) -> anyhow::Result<bool> {
    jobs::enqueue(executor, &alert, i32::MAX).await
}
