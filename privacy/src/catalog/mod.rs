//! The catalog of personal data: every column that holds something about a person (or a secret
//! sealed like it), what it is, how it is tied to the person, whether it is sealed, what the
//! export shows of it, how erasure removes it and which retention rule ends it.
//!
//! It is the one list the code and the tests read: rotation re-seals [`sealed_columns`], the
//! retention pass runs one rule per [`Prune`], and the integration tests compare it with the
//! schema (every `bytea` column and every column named or keyed like personal data must be
//! here or in [`NOT_PERSONAL`]), with an erasure (nothing of a catalogued column is left about
//! the person) and with an export (every column marked [`Export::Field`] is in it). A new
//! column holding personal data is added here, or CI fails.

mod columns;

pub use columns::{COLUMNS, NOT_PERSONAL};

use crate::crypto::SealedField;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// A value sealed for this field (see `crypto`), never in clear.
    Sealed(SealedField),
    /// A keyed blind index (HMAC under `crypto.blind_index_key`) to find a person without
    /// decrypting.
    BlindIndex,
    /// A SHA-256 hash: of a Messenger message id, or of a link token.
    Hash,
    /// When something about the person happened.
    Timestamp,
    /// The id of the person's row, or a reference to a row about them.
    Reference,
    /// A plain value about the person's relationship with the Page (status, consent source).
    State,
    /// A job's JSON payload, which carries ids only.
    JobPayload,
    /// An account holder's login e-mail, in clear: how they log in and hear of changes.
    Login,
}

/// How a column's value is tied to one person, so erasure and export can find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// By subscriber id: the row's `column` is (or references) `subscribers.id`.
    Subscriber {
        /// The column holding the subscriber id.
        column: &'static str,
    },
    /// By the blind index of the Page and the PSID.
    PsidIndex,
    /// Only by opening the sealed PSID of each of the Page's rows (no index exists).
    SealedPsid,
    /// The event whose message opted the person in: `mid_hash` equals the subscriber's
    /// `consent_mid_hash`.
    ConsentEvent,
    /// Through the data-subject request it belongs to, whose sealed subject names the person.
    Request,
    /// Not about a person: a business secret sealed the same way (a Page's token).
    NotAPerson,
    /// About an account holder (a workspace's member), not a subscriber: by `users.id` in
    /// `column`.
    AccountHolder {
        /// The column holding the user id.
        column: &'static str,
    },
}

/// What the export (`subject_data`) shows of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// The JSON pointer, in the export document, of the field (or list) holding it.
    Field(&'static str),
    /// Not in the export, and why.
    No(&'static str),
}

/// How an erasure (`erasure::erase`) removes a column's value about the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// Erasure deletes the row.
    DeleteRow,
    /// The row goes with the row of `from` that erasure deletes (a foreign-key cascade).
    Cascade {
        /// The table whose row erasure deletes.
        from: &'static str,
    },
    /// The column is set to NULL (the row stays, about nobody).
    NullColumn,
    /// Kept, and why.
    Kept(&'static str),
}

/// A rule of the leader's retention pass: one statement each, in `moonengage-scheduler`'s
/// retention, which has one for every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Jobs failed for good, after `retention.finished_jobs_secs`.
    FailedJobs,
    /// Processed webhook events (and unprocessed ones whose job is gone), after
    /// `retention.webhook_events_secs`.
    WebhookEvents,
    /// Delivery rows of campaigns ended `retention.deliveries_days` ago.
    Deliveries,
    /// People who stopped writing `retention.inactive_subscriber_days` ago.
    InactiveSubscribers,
    /// People unsubscribed `retention.unsubscribed_days` ago; only a suppression stays.
    UnsubscribedPeople,
    /// Exports whose link expired.
    ExpiredExports,
    /// The sealed subject of requests completed or refused.
    CompletedRequestSubjects,
    /// Account activity older than `retention.account_activity_days`.
    AccountActivity,
}

impl Prune {
    /// Every rule, in the order a pass runs them.
    pub const ALL: [Prune; 8] = [
        Prune::FailedJobs,
        Prune::WebhookEvents,
        Prune::Deliveries,
        Prune::InactiveSubscribers,
        Prune::UnsubscribedPeople,
        Prune::ExpiredExports,
        Prune::CompletedRequestSubjects,
        Prune::AccountActivity,
    ];

    /// What the rule removes, for logs.
    pub const fn what(self) -> &'static str {
        match self {
            Prune::FailedJobs => "failed jobs",
            Prune::WebhookEvents => "webhook events",
            Prune::Deliveries => "deliveries",
            Prune::InactiveSubscribers => "inactive subscribers",
            Prune::UnsubscribedPeople => "unsubscribed people",
            Prune::ExpiredExports => "expired exports",
            Prune::CompletedRequestSubjects => "subjects of completed requests",
            Prune::AccountActivity => "account activity",
        }
    }
}

/// What ends a column's value when nobody asks for erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A rule of the leader's retention pass.
    Pass(Prune),
    /// Cleared by the worker as soon as the webhook event is processed.
    ClearedWhenProcessed,
    /// Deleted when the export is downloaded.
    DeletedWhenDownloaded,
    /// Goes with the subscriber row (a foreign-key cascade).
    WithSubscriber,
    /// Kept as long as the Page is.
    WithPage,
    /// Kept for good, and why.
    Kept(&'static str),
}

/// One catalogued column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
    /// What it holds.
    pub holds: Holds,
    /// How it is tied to a person.
    pub keyed: Keyed,
    /// What the export shows of it.
    pub export: Export,
    /// How erasure removes it.
    pub erasure: Erasure,
    /// What ends it otherwise (every rule that does).
    pub retention: &'static [Retention],
}

/// A column holding sealed values, in a table whose primary key is `id bigint` (what key
/// rotation walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The `bytea` column.
    pub column: &'static str,
    /// The field its values are sealed for.
    pub field: SealedField,
}

/// Every sealed column, in catalog order (a rotate job's position is an index into it, so
/// entries are only ever appended).
pub fn sealed_columns() -> Vec<SealedColumn> {
    COLUMNS
        .iter()
        .filter_map(|c| match c.holds {
            Holds::Sealed(field) => Some(SealedColumn {
                table: c.table,
                column: c.column,
                field,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_sealed_field_is_catalogued_exactly_once() {
        for field in SealedField::ALL {
            let columns: Vec<_> = sealed_columns()
                .into_iter()
                .filter(|c| c.field == field)
                .collect();
            assert_eq!(columns.len(), 1, "{field}: {columns:?}");
        }
        assert_eq!(sealed_columns().len(), SealedField::ALL.len());
    }

    #[test]
    fn the_rotation_order_of_sealed_columns_never_changes() {
        let order: Vec<_> = sealed_columns()
            .iter()
            .map(|c| format!("{}.{}", c.table, c.column))
            .collect();
        assert_eq!(
            order[..6],
            [
                "pages.access_token",
                "subscribers.psid",
                "subscribers.first_name",
                "webhook_events.psid",
                "dsr_requests.subject_ref",
                "exports.payload",
            ]
        );
    }

    #[test]
    fn each_column_is_catalogued_once_and_not_also_as_not_personal() {
        let mut seen = BTreeSet::new();
        for c in COLUMNS {
            assert!(
                seen.insert((c.table, c.column)),
                "{}.{} twice",
                c.table,
                c.column
            );
            assert!(
                !c.retention.is_empty(),
                "{}.{}: no retention",
                c.table,
                c.column
            );
        }
        for (table, column, _) in NOT_PERSONAL {
            assert!(seen.insert((table, column)), "{table}.{column} twice");
        }
    }

    #[test]
    fn every_retention_rule_ends_some_catalogued_column() {
        for prune in Prune::ALL {
            assert!(
                COLUMNS
                    .iter()
                    .any(|c| c.retention.contains(&Retention::Pass(prune))),
                "{} ends nothing catalogued",
                prune.what()
            );
        }
    }
}
