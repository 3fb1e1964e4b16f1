//! Privacy-policy updates: an admin publishes a version (summary and URL), and every person we
//! hold data about is told of it once, through Messenger — at once when they are inside their
//! 24-hour window, otherwise with the reply to their next message (Messenger allows nothing
//! else). `subscribers.policy_version_notified` records the version each person was told of.
//!
//! Everyone we hold data about is told, unsubscribed people included: a policy notice is a
//! service message about how their data is used, not marketing, and they still have a right to
//! know. Only people Facebook reports unreachable are left out.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use moonengage_queue::{Job, jobs};

/// Longest summary accepted: the notice (with the Page name, URL and how to act) must stay well
/// inside Messenger's 2,000 characters.
pub const MAX_SUMMARY_CHARS: usize = 1_000;
/// Longest version label and URL accepted.
pub const MAX_LABEL_CHARS: usize = 300;

/// One policy notice to one person. Ids only; the version row holds the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNoticeJob {
    /// The person.
    pub subscriber_id: i64,
    /// `policy_versions.id` to tell them of.
    pub policy_version_id: i64,
    /// The event whose reply carries the notice; `None` when queued at publication. Part of
    /// the key: a notice whose attempt found the window closed is queued again with the next
    /// message (the claim on `policy_version_notified` still lets only one of them send).
    pub reply_to: Option<i64>,
}

impl Job for PolicyNoticeJob {
    const KIND: &'static str = "policy";

    fn key(&self) -> String {
        match self.reply_to {
            None => format!("publish:{}:{}", self.policy_version_id, self.subscriber_id),
            Some(event) => format!(
                "reply:{}:{}:{event}",
                self.policy_version_id, self.subscriber_id
            ),
        }
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}

/// A version to publish.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// The label people see, e.g. `2026-12`.
    pub version: &'a str,
    /// What changed, in a few sentences.
    pub summary: &'a str,
    /// Where the full policy is (https).
    pub url: &'a str,
}

/// Why a version cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A field is empty, too long or not https; `field` names it.
    #[error("{field} {reason}")]
    Invalid {
        /// `version`, `summary` or `url`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// What publishing did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// `policy_versions.id`.
    pub id: i64,
    /// The label.
    pub version: String,
    /// When it was first published.
    pub published_at: DateTime<Utc>,
    /// False when this version was published before: nothing was done again.
    pub created: bool,
    /// Notices queued now for people inside their window.
    pub queued: i64,
}

impl NewVersion<'_> {
    fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |field, reason: &str| PolicyError::Invalid {
            field,
            reason: reason.into(),
        };
        for (field, value, max) in [
            ("version", self.version, MAX_LABEL_CHARS),
            ("summary", self.summary, MAX_SUMMARY_CHARS),
            ("url", self.url, MAX_LABEL_CHARS),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            if value.chars().count() > max {
                return Err(invalid(field, &format!("must be at most {max} characters")));
            }
        }
        if !self.url.starts_with("https://") || self.url.contains(char::is_whitespace) {
            return Err(invalid("url", "must be an https:// address"));
        }
        Ok(())
    }
}

/// Publishes a version and, in the same transaction, queues one notice per person inside their
/// window (one set-based statement). Publishing a version again does nothing.
pub async fn publish(
    pool: &PgPool,
    version: &NewVersion<'_>,
    max_attempts: i32,
) -> Result<Published, PolicyError> {
    version.validate()?;
    let mut tx = pool.begin().await.context("starting to publish a policy")?;
    let inserted: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO policy_versions (version, summary, url) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO NOTHING RETURNING id, published_at",
    )
    .bind(version.version.trim())
    .bind(version.summary.trim())
    .bind(version.url.trim())
    .fetch_optional(&mut *tx)
    .await
    .context("recording a policy version")?;
    let Some((id, published_at)) = inserted else {
        let (id, published_at): (i64, DateTime<Utc>) =
            sqlx::query_as("SELECT id, published_at FROM policy_versions WHERE version = $1")
                .bind(version.version.trim())
                .fetch_one(&mut *tx)
                .await
                .context("reading a published policy version")?;
        return Ok(Published {
            id,
            version: version.version.trim().to_owned(),
            published_at,
            created: false,
            queued: 0,
        });
    };
    let people: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM subscribers
         WHERE status <> 'unreachable'
           AND in_messaging_window(last_interaction_at)
           AND coalesce(policy_version_notified, 0) < $1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .context("finding people to tell of a policy")?;
    let notices: Vec<PolicyNoticeJob> = people
        .into_iter()
        .map(|subscriber_id| PolicyNoticeJob {
            subscriber_id,
            policy_version_id: id,
            reply_to: None,
        })
        .collect();
    let queued = jobs::enqueue_many(&mut tx, &notices, Duration::ZERO, max_attempts)
        .await
        .context("queuing policy notices")?;
    tx.commit().await.context("committing a policy version")?;
    Ok(Published {
        id,
        version: version.version.trim().to_owned(),
        published_at,
        created: true,
        queued: i64::try_from(queued).unwrap_or(i64::MAX),
    })
}

/// Queues the latest version's notice for a person who just wrote to their Page, unless they
/// were told of it already: the reply path for everyone who was outside their window when it
/// was published. Keyed by the event, so a notice whose earlier attempt found the window closed
/// can be queued again; the claim in [`claim`] still lets only one of them send.
pub async fn queue_for_reply(
    conn: &mut PgConnection,
    subscriber_id: i64,
    event_id: i64,
    max_attempts: i32,
) -> anyhow::Result<bool> {
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT v.id FROM subscribers s, (SELECT max(id) AS id FROM policy_versions) v
         WHERE s.id = $1 AND v.id IS NOT NULL AND s.status <> 'unreachable'
           AND coalesce(s.policy_version_notified, 0) < v.id",
    )
    .bind(subscriber_id)
    .fetch_optional(&mut *conn)
    .await
    .context("finding the policy a person was not told of")?;
    let Some(policy_version_id) = latest else {
        return Ok(false);
    };
    let notice = PolicyNoticeJob {
        subscriber_id,
        policy_version_id,
        reply_to: Some(event_id),
    };
    jobs::enqueue(&mut *conn, &notice, max_attempts)
        .await
        .context("queuing a policy notice with a reply")
}

/// What a claimed notice needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// The version recorded before this claim, restored by [`release`] when the send fails.
    pub previous: Option<i64>,
    /// The label.
    pub version: String,
    /// What changed.
    pub summary: String,
    /// Where the full policy is.
    pub url: String,
}

/// Claims the right to tell a person of a version: records it as told, atomically, only when
/// it is the latest version, they were not told of it (or a later one) yet, they are reachable
/// and inside their window. `None` means there is nothing to send — a concurrent job claimed it,
/// or the person will be told with their next reply. Like a delivery claim, a claim whose send
/// dies half-way is kept: the person may have seen it, so it is never sent twice.
pub async fn claim(
    pool: &PgPool,
    subscriber_id: i64,
    version_id: i64,
) -> anyhow::Result<Option<Claimed>> {
    sqlx::query_as(
        "WITH old AS (
             SELECT id, policy_version_notified AS previous FROM subscribers
             WHERE id = $1 FOR UPDATE
         ),
         claimed AS (
             UPDATE subscribers s SET policy_version_notified = $2
             FROM old
             WHERE s.id = old.id
               AND coalesce(old.previous, 0) < $2
               AND $2 = (SELECT max(id) FROM policy_versions)
               AND s.status <> 'unreachable'
               AND in_messaging_window(s.last_interaction_at)
             RETURNING old.previous
         )
         SELECT claimed.previous, v.version, v.summary, v.url
         FROM claimed, policy_versions v WHERE v.id = $2",
    )
    .bind(subscriber_id)
    .bind(version_id)
    .fetch_optional(pool)
    .await
    .context("claiming a policy notice")
}

/// Gives a claim back after a send that certainly did not reach the person, so a retry (or
/// their next reply) can tell them.
pub async fn release(
    pool: &PgPool,
    subscriber_id: i64,
    version_id: i64,
    previous: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE subscribers SET policy_version_notified = $3
         WHERE id = $1 AND policy_version_notified = $2",
    )
    .bind(subscriber_id)
    .bind(version_id)
    .bind(previous)
    .execute(pool)
    .await
    .context("releasing a policy notice")?;
    Ok(())
}

/// The text of a notice: what changed, where to read it, and how to act on it (the keywords
/// that ask for a copy of one's data or its erasure).
pub fn notice_text(
    page_name: &str,
    claimed: &Claimed,
    export_keyword: &str,
    erase_keyword: &str,
) -> String {
    format!(
        "{page_name} has updated its privacy policy (version {}). {} Read it here: {} \
         Reply \"{export_keyword}\" for a copy of your data, \"{erase_keyword}\" to have it \
         deleted, or STOP to unsubscribe.",
        claimed.version, claimed.summary, claimed.url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_needs_a_label_a_bounded_summary_and_an_https_url() {
        let ok = NewVersion {
            version: "2026-12",
            summary: "We now keep delivery records for 30 days.",
            url: "https://example.com/privacy",
        };
        assert!(ok.validate().is_ok());
        let http = NewVersion {
            url: "http://example.com/privacy",
            ..ok.clone()
        };
        assert!(matches!(
            http.validate(),
            Err(PolicyError::Invalid { field: "url", .. })
        ));
        let long = "x".repeat(MAX_SUMMARY_CHARS + 1);
        let too_long = NewVersion {
            summary: &long,
            ..ok.clone()
        };
        assert!(matches!(
            too_long.validate(),
            Err(PolicyError::Invalid {
                field: "summary",
                ..
            })
        ));
    }

    #[test]
    fn the_longest_notice_fits_a_messenger_message() {
        let claimed = Claimed {
            previous: None,
            version: "v".repeat(MAX_LABEL_CHARS),
            summary: "s".repeat(MAX_SUMMARY_CHARS),
            url: format!("https://{}", "u".repeat(MAX_LABEL_CHARS - 8)),
        };
        let text = notice_text(
            &"p".repeat(100),
            &claimed,
            "export my data",
            "delete my data",
        );
        assert!(text.chars().count() <= 2_000, "{}", text.chars().count());
    }
}
