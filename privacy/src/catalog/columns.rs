//! The catalogued columns themselves, and the look-alikes that hold no personal data.

use super::{Column, Erasure, Export, Holds, Keyed, Prune, Retention};
use crate::crypto::SealedField;

/// Columns whose type or name looks like personal data but which hold none, and why; the
/// schema test accepts a column only if it is here or in [`COLUMNS`].
pub const NOT_PERSONAL: &[(&str, &str, &str)] = &[
    ("_sqlx_migrations", "checksum", "a migration's checksum"),
    ("api_tokens", "name", "a member's label for their API token"),
    (
        "api_tokens",
        "token_hash",
        "an API token's SHA-256 hash: a secret's, about nobody",
    ),
    ("campaigns", "name", "the business's name for a campaign"),
    (
        "sessions",
        "token_hash",
        "a console session secret's SHA-256 hash: a secret's, about nobody",
    ),
    ("data_keys", "wrapped", "a data key, wrapped with age"),
    (
        "invitations",
        "token_hash",
        "an invitation link's SHA-256 hash: a secret's, about nobody",
    ),
    ("pages", "name", "the business's Page name, public"),
    ("queue_workers", "name", "a worker process's name"),
    (
        "workspaces",
        "name",
        "the business's name for its workspace",
    ),
];

/// A column of a row keyed by `subscriber_id` (or `id`, for `subscribers` itself) that erasure
/// deletes.
const fn of_subscriber(
    table: &'static str,
    column: &'static str,
    holds: Holds,
    export: Export,
    retention: &'static [Retention],
) -> Column {
    Column {
        table,
        column,
        holds,
        keyed: Keyed::Subscriber {
            column: "subscriber_id",
        },
        export,
        erasure: Erasure::DeleteRow,
        retention,
    }
}

/// A subscriber's own column.
const fn subscriber(column: &'static str, holds: Holds, export: Export) -> Column {
    Column {
        keyed: Keyed::Subscriber { column: "id" },
        ..of_subscriber("subscribers", column, holds, export, SUBSCRIBER_RULES)
    }
}

/// What ends a subscriber row.
const SUBSCRIBER_RULES: &[Retention] = &[
    Retention::Pass(Prune::InactiveSubscribers),
    Retention::Pass(Prune::UnsubscribedPeople),
];

/// A column of a received webhook event, which erasure deletes.
const fn webhook_event(
    column: &'static str,
    holds: Holds,
    keyed: Keyed,
    export: Export,
    retention: &'static [Retention],
) -> Column {
    Column {
        table: "webhook_events",
        column,
        holds,
        keyed,
        export,
        erasure: Erasure::DeleteRow,
        retention,
    }
}

/// What ends the sender of a webhook event.
const SENDER_RULES: &[Retention] = &[
    Retention::ClearedWhenProcessed,
    Retention::Pass(Prune::WebhookEvents),
];

/// Why a webhook event's sender is not exported.
const EVENT_NOT_EXPORTED: &str = "held only until a worker processes the event (seconds); \
                                  what the person wrote is never stored";

/// What ends an export.
const EXPORT_RULES: &[Retention] = &[
    Retention::DeletedWhenDownloaded,
    Retention::Pass(Prune::ExpiredExports),
];

/// What ends a delivery row.
const DELIVERY_RULES: &[Retention] = &[Retention::Pass(Prune::Deliveries)];

/// What ends a job row (one that succeeds is deleted at once).
const JOB_RULES: &[Retention] = &[Retention::Pass(Prune::FailedJobs)];

/// Every column holding personal data (and every sealed column). Sealed columns keep their
/// relative order: see [`super::sealed_columns`].
pub const COLUMNS: &[Column] = &[
    Column {
        table: "pages",
        column: "access_token",
        holds: Holds::Sealed(SealedField::PageAccessToken),
        keyed: Keyed::NotAPerson,
        export: Export::No("the Page's secret, not about the person"),
        erasure: Erasure::Kept("the business's, not the person's"),
        retention: &[Retention::WithPage],
    },
    subscriber("id", Holds::Reference, Export::No("an internal number")),
    subscriber(
        "page_id",
        Holds::Reference,
        Export::Field("/controller/facebook_page_id"),
    ),
    subscriber(
        "psid_index",
        Holds::BlindIndex,
        Export::No("a keyed hash of the PSID, which the export gives in clear"),
    ),
    subscriber(
        "psid",
        Holds::Sealed(SealedField::SubscriberPsid),
        Export::Field("/profile/page_scoped_id"),
    ),
    subscriber(
        "first_name",
        Holds::Sealed(SealedField::SubscriberFirstName),
        Export::Field("/profile/first_name"),
    ),
    subscriber(
        "status",
        Holds::State,
        Export::Field("/subscription/status"),
    ),
    subscriber(
        "opted_in_at",
        Holds::Timestamp,
        Export::Field("/consent/opted_in_at"),
    ),
    subscriber(
        "consent_source",
        Holds::State,
        Export::Field("/consent/source"),
    ),
    subscriber(
        "consent_mid_hash",
        Holds::Hash,
        Export::Field("/consent/first_message_id_sha256"),
    ),
    subscriber(
        "last_interaction_at",
        Holds::Timestamp,
        Export::Field("/profile/last_message_at"),
    ),
    subscriber(
        "unsubscribed_at",
        Holds::Timestamp,
        Export::Field("/subscription/unsubscribed_at"),
    ),
    subscriber(
        "unsubscribed_by",
        Holds::State,
        Export::Field("/subscription/unsubscribed_by"),
    ),
    subscriber(
        "created_at",
        Holds::Timestamp,
        Export::Field("/profile/first_seen_at"),
    ),
    subscriber(
        "policy_version_notified",
        Holds::Reference,
        Export::No("which policy version they were told of: the notice they received says it"),
    ),
    webhook_event(
        "psid",
        Holds::Sealed(SealedField::WebhookEventPsid),
        Keyed::SealedPsid,
        Export::No(EVENT_NOT_EXPORTED),
        SENDER_RULES,
    ),
    webhook_event(
        "sender_index",
        Holds::BlindIndex,
        Keyed::SealedPsid,
        Export::No(EVENT_NOT_EXPORTED),
        SENDER_RULES,
    ),
    webhook_event(
        "mid_hash",
        Holds::Hash,
        Keyed::ConsentEvent,
        Export::Field("/consent/first_message_id_sha256"),
        &[Retention::Pass(Prune::WebhookEvents)],
    ),
    Column {
        table: "dsr_requests",
        column: "subject_ref",
        holds: Holds::Sealed(SealedField::DsrSubject),
        keyed: Keyed::Request,
        export: Export::Field("/open_requests"),
        erasure: Erasure::NullColumn,
        retention: &[Retention::Pass(Prune::CompletedRequestSubjects)],
    },
    of_subscriber(
        "exports",
        "payload",
        Holds::Sealed(SealedField::ExportPayload),
        Export::No("it is the export"),
        EXPORT_RULES,
    ),
    of_subscriber(
        "exports",
        "subscriber_id",
        Holds::Reference,
        Export::No("it is the export"),
        EXPORT_RULES,
    ),
    of_subscriber(
        "exports",
        "token_hash",
        Holds::Hash,
        Export::No("the hash of the link that delivers the export"),
        EXPORT_RULES,
    ),
    of_subscriber(
        "deliveries",
        "subscriber_id",
        Holds::Reference,
        Export::Field("/deliveries"),
        DELIVERY_RULES,
    ),
    of_subscriber(
        "deliveries",
        "run_at",
        Holds::Timestamp,
        Export::Field("/queued_messages"),
        DELIVERY_RULES,
    ),
    of_subscriber(
        "deliveries",
        "message_id",
        Holds::Reference,
        Export::No("Facebook's id of a message sent to them; the delivery is exported"),
        DELIVERY_RULES,
    ),
    of_subscriber(
        "jobs",
        "subscriber_id",
        Holds::Reference,
        Export::No("work about them (a notice, a profile to fetch), done within minutes"),
        JOB_RULES,
    ),
    of_subscriber(
        "jobs",
        "key",
        Holds::Reference,
        Export::No("ids only (the subscriber's, for jobs about one person)"),
        JOB_RULES,
    ),
    of_subscriber(
        "jobs",
        "payload",
        Holds::JobPayload,
        Export::No("ids only, of the job's row about them"),
        JOB_RULES,
    ),
    Column {
        table: "incident_notices",
        column: "subscriber_id",
        holds: Holds::Reference,
        keyed: Keyed::Subscriber {
            column: "subscriber_id",
        },
        export: Export::No("a breach notice owed to them, which they receive"),
        erasure: Erasure::Cascade {
            from: "subscribers",
        },
        retention: &[Retention::WithSubscriber],
    },
    Column {
        table: "suppressions",
        column: "psid_index",
        holds: Holds::BlindIndex,
        keyed: Keyed::PsidIndex,
        export: Export::No("kept only after their other data is deleted; no PSID to export"),
        erasure: Erasure::Kept(
            "the record that they said STOP, so a re-import never messages them again",
        ),
        retention: &[Retention::Kept("as long as their objection stands")],
    },
    account_holder("users", "email", Holds::Login, "id", USER_RULES),
    account_holder("users", "password_hash", Holds::Hash, "id", USER_RULES),
    account_holder(
        "email_changes",
        "old_email",
        Holds::Login,
        "user_id",
        EMAIL_CHANGE_RULES,
    ),
    account_holder(
        "invitations",
        "email",
        Holds::Login,
        "email",
        INVITATION_RULES,
    ),
    account_holder(
        "account_events",
        "origin",
        Holds::State,
        "user_id",
        ACTIVITY_RULES,
    ),
    account_holder(
        "account_events",
        "browser",
        Holds::State,
        "user_id",
        ACTIVITY_RULES,
    ),
    account_holder("sessions", "origin", Holds::State, "user_id", SESSION_RULES),
    account_holder(
        "sessions",
        "browser",
        Holds::State,
        "user_id",
        SESSION_RULES,
    ),
];

/// A column about a workspace's member (an account holder, not a subscriber): they see it in
/// their console, and it goes with their account.
const fn account_holder(
    table: &'static str,
    column: &'static str,
    holds: Holds,
    user_column: &'static str,
    retention: &'static [Retention],
) -> Column {
    Column {
        table,
        column,
        holds,
        keyed: Keyed::AccountHolder {
            column: user_column,
        },
        export: Export::No("an account holder's, shown in their console, not a subscriber's"),
        erasure: Erasure::Kept("an account holder's: cancelling the workspace deletes it"),
        retention,
    }
}

/// What ends a user's account.
const USER_RULES: &[Retention] = &[Retention::Kept(
    "while they belong to a workspace: cancellation deletes users of no other workspace",
)];

/// What ends a console session's row.
const SESSION_RULES: &[Retention] = &[Retention::Kept(
    "until logout, or its idle or absolute expiry (deleted at the next login)",
)];

/// What ends an invitation (its invitee is found by address: they may have no account yet).
const INVITATION_RULES: &[Retention] = &[Retention::Kept(
    "while the workspace exists: cancellation deletes its invitations",
)];

/// What ends a previous address: the alert about the change, once sent to it.
const EMAIL_CHANGE_RULES: &[Retention] = &[Retention::Kept(
    "until the alert about the change has been sent to it (the alert job deletes it)",
)];

/// What ends an account's activity.
const ACTIVITY_RULES: &[Retention] = &[Retention::Pass(Prune::AccountActivity)];
