//! The breach register (GDPR Art. 33/34). An admin declares a personal-data breach (when it was
//! detected, which categories of data, how many people); the supervisory authority must be
//! informed within [`REPORT_DEADLINE_HOURS`] of detection, which a gauge and an alert watch and
//! admins are e-mailed about (at declaration, and once when the deadline nears).
//!
//! When an admin decides the people affected must be told, they name them: every subscriber of
//! one Page, or everybody we hold data about. Each is owed the notice in `incident_notices`;
//! people inside their 24-hour window are told at once, the others with the reply to their next
//! message (the only way Messenger allows), exactly as privacy-policy notices are.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use moonengage_queue::{Job, jobs};

use moonengage_ops::alerts::{self, AdminEvent};

/// Hours from detection within which the authority must be informed (GDPR Art. 33(1)).
pub const REPORT_DEADLINE_HOURS: i64 = 72;
/// Longest description accepted: it goes into the people's notice, which must stay well inside
/// Messenger's 2,000 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;

/// Where an incident stands with the supervisory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Declared; the authority is not informed yet (the 72-hour clock runs).
    Open,
    /// The authority was informed.
    Reported,
    /// Dealt with; nothing more to do.
    Closed,
}

impl IncidentStatus {
    /// As `incidents.status` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Reported => "reported",
            IncidentStatus::Closed => "closed",
        }
    }

    fn parse(value: &str) -> anyhow::Result<IncidentStatus> {
        Ok(match value {
            "open" => IncidentStatus::Open,
            "reported" => IncidentStatus::Reported,
            "closed" => IncidentStatus::Closed,
            other => anyhow::bail!("unknown incident status {other}"),
        })
    }
}

impl std::str::FromStr for IncidentStatus {
    type Err = IncidentError;

    fn from_str(value: &str) -> Result<IncidentStatus, IncidentError> {
        IncidentStatus::parse(value).map_err(|_| IncidentError::Invalid {
            field: "status",
            reason: "must be open, reported or closed".into(),
        })
    }
}

/// A category of personal data an incident may have exposed: what we hold (see the privacy
/// page), so the notice can say what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataCategory {
    /// Page-scoped Messenger ids.
    MessengerIds,
    /// First names.
    FirstNames,
    /// Opt-in evidence (when, how).
    ConsentEvidence,
    /// Which campaigns reached whom.
    DeliveryRecords,
    /// Data-subject requests.
    DataRequests,
    /// Page access tokens (business data, but a breach of them lets others message people).
    PageTokens,
}

impl DataCategory {
    /// Every category, in the order the notice lists them.
    pub const ALL: [DataCategory; 6] = [
        DataCategory::MessengerIds,
        DataCategory::FirstNames,
        DataCategory::ConsentEvidence,
        DataCategory::DeliveryRecords,
        DataCategory::DataRequests,
        DataCategory::PageTokens,
    ];

    /// As `incidents.categories` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::MessengerIds => "messenger_ids",
            DataCategory::FirstNames => "first_names",
            DataCategory::ConsentEvidence => "consent_evidence",
            DataCategory::DeliveryRecords => "delivery_records",
            DataCategory::DataRequests => "data_requests",
            DataCategory::PageTokens => "page_tokens",
        }
    }

    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            DataCategory::MessengerIds => "your Messenger id for the Page",
            DataCategory::FirstNames => "your first name",
            DataCategory::ConsentEvidence => "when and how you subscribed",
            DataCategory::DeliveryRecords => "which messages were sent to you",
            DataCategory::DataRequests => "your requests about your data",
            DataCategory::PageTokens => "the Page's access to Messenger",
        }
    }
}

impl std::str::FromStr for DataCategory {
    type Err = IncidentError;

    fn from_str(value: &str) -> Result<DataCategory, IncidentError> {
        DataCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| IncidentError::Invalid {
                field: "categories",
                reason: format!(
                    "`{value}` is not one of {}",
                    DataCategory::ALL.map(DataCategory::as_str).join(", ")
                ),
            })
    }
}

/// Why an incident cannot be recorded or changed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// A field is missing or wrong; `field` names it.
    #[error("{field} {reason}")]
    Invalid {
        /// The field, e.g. `detected_at`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No incident (or Page) with this id.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The change would move the status backwards, or the notice was decided already.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// An incident to declare.
#[derive(Debug, Clone)]
pub struct NewIncident {
    /// When the breach was detected: the 72 hours run from here.
    pub detected_at: DateTime<Utc>,
    /// What may have been exposed.
    pub categories: Vec<DataCategory>,
    /// How many people (an estimate is fine; update it as it firms up).
    pub people_affected: i32,
    /// What happened, in the admins' words, without naming anybody; people read it in the notice.
    pub description: String,
}

/// A change to an incident; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IncidentUpdate {
    /// The new status (forward only: open → reported → closed, or open → closed).
    pub status: Option<IncidentStatus>,
    /// A firmer count.
    pub people_affected: Option<i32>,
    /// A fuller list.
    pub categories: Option<Vec<DataCategory>>,
}

/// An incident as the register shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// `incidents.id`.
    pub id: i64,
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
    /// When the authority must be informed by.
    pub report_deadline: DateTime<Utc>,
    /// What may have been exposed.
    pub categories: Vec<DataCategory>,
    /// How many people.
    pub people_affected: i32,
    /// What happened.
    pub description: String,
    /// Where it stands.
    pub status: IncidentStatus,
    /// When it was declared.
    pub declared_at: DateTime<Utc>,
    /// When the authority was informed.
    pub reported_at: Option<DateTime<Utc>>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// When an admin decided to tell the people affected.
    pub notice_decided_at: Option<DateTime<Utc>>,
    /// The Page whose subscribers are told; `None` with a decision: everybody.
    pub notice_page_id: Option<i64>,
    /// People owed the notice.
    pub notices_owed: i64,
    /// People told so far.
    pub notices_told: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    detected_at: DateTime<Utc>,
    categories: Vec<String>,
    people_affected: i32,
    description: String,
    status: String,
    declared_at: DateTime<Utc>,
    reported_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    notice_decided_at: Option<DateTime<Utc>>,
    notice_page_id: Option<i64>,
    notices_owed: i64,
    notices_told: i64,
}

impl TryFrom<Row> for Incident {
    type Error = anyhow::Error;

    fn try_from(row: Row) -> anyhow::Result<Incident> {
        Ok(Incident {
            id: row.id,
            detected_at: row.detected_at,
            report_deadline: row.detected_at + chrono::Duration::hours(REPORT_DEADLINE_HOURS),
            categories: row
                .categories
                .iter()
                .map(|c| c.parse::<DataCategory>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("stored category: {e}"))?,
            people_affected: row.people_affected,
            description: row.description,
            status: IncidentStatus::parse(&row.status)?,
            declared_at: row.declared_at,
            reported_at: row.reported_at,
            closed_at: row.closed_at,
            notice_decided_at: row.notice_decided_at,
            notice_page_id: row.notice_page_id,
            notices_owed: row.notices_owed,
            notices_told: row.notices_told,
        })
    }
}

const SELECT: &str = "SELECT i.id, i.detected_at, i.categories, i.people_affected, i.description,
            i.status, i.declared_at, i.reported_at, i.closed_at, i.notice_decided_at,
            i.notice_page_id,
            (SELECT count(*) FROM incident_notices n WHERE n.incident_id = i.id) AS notices_owed,
            (SELECT count(*) FROM incident_notices n
             WHERE n.incident_id = i.id AND n.told_at IS NOT NULL) AS notices_told
     FROM incidents i";

fn validate_categories(categories: &[DataCategory]) -> Result<Vec<&'static str>, IncidentError> {
    if categories.is_empty() {
        return Err(IncidentError::Invalid {
            field: "categories",
            reason: "must name at least one category of data".into(),
        });
    }
    let mut names: Vec<&'static str> = categories.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

fn validate_people(people_affected: i32) -> Result<(), IncidentError> {
    if people_affected < 0 {
        return Err(IncidentError::Invalid {
            field: "people_affected",
            reason: "must not be negative".into(),
        });
    }
    Ok(())
}

impl NewIncident {
    fn validate(&self) -> Result<Vec<&'static str>, IncidentError> {
        let categories = validate_categories(&self.categories)?;
        validate_people(self.people_affected)?;
        let description = self.description.trim();
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(IncidentError::Invalid {
                field: "description",
                reason: format!("must be 1 to {MAX_DESCRIPTION_CHARS} characters"),
            });
        }
        if self.detected_at > Utc::now() + chrono::Duration::minutes(5) {
            return Err(IncidentError::Invalid {
                field: "detected_at",
                reason: "must not be in the future".into(),
            });
        }
        Ok(categories)
    }
}

/// Records an incident and queues the admins' e-mail about it, in one transaction.
pub async fn declare(pool: &PgPool, incident: &NewIncident) -> Result<Incident, IncidentError> {
    let categories = incident.validate()?;
    let mut tx = pool
        .begin()
        .await
        .context("starting to declare an incident")?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (detected_at, categories, people_affected, description)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(incident.detected_at)
    .bind(&categories)
    .bind(incident.people_affected)
    .bind(incident.description.trim())
    .fetch_one(&mut *tx)
    .await
    .context("recording an incident")?;
    alerts::admin(&mut *tx, AdminEvent::IncidentDeclared { incident_id: id }).await?;
    tx.commit().await.context("committing an incident")?;
    existing(pool, id).await
}

/// One incident.
pub async fn get(pool: &PgPool, id: i64) -> anyhow::Result<Option<Incident>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE i.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
        .context("reading an incident")?;
    row.map(Incident::try_from).transpose()
}

/// One incident that must exist.
async fn existing(pool: &PgPool, id: i64) -> Result<Incident, IncidentError> {
    get(pool, id)
        .await?
        .ok_or(IncidentError::NotFound("incident"))
}

/// The register, newest first.
pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<Incident>> {
    let rows: Vec<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY i.id DESC")))
            .fetch_all(pool)
            .await
            .context("listing incidents")?;
    rows.into_iter().map(Incident::try_from).collect()
}

/// Changes an incident's status, count or categories. The status only moves forward; reaching
/// `reported` or `closed` stamps when.
pub async fn update(
    pool: &PgPool,
    id: i64,
    change: &IncidentUpdate,
) -> Result<Incident, IncidentError> {
    let categories = change
        .categories
        .as_deref()
        .map(validate_categories)
        .transpose()?;
    if let Some(people) = change.people_affected {
        validate_people(people)?;
    }
    let current = existing(pool, id).await?;
    if let Some(status) = change.status {
        let rank = |s: IncidentStatus| s as u8;
        if rank(status) < rank(current.status) {
            return Err(IncidentError::Conflict(format!(
                "incident {id} is {} and cannot go back to {}",
                current.status.as_str(),
                status.as_str()
            )));
        }
    }
    sqlx::query(
        "UPDATE incidents SET
             status = coalesce($2, status),
             people_affected = coalesce($3, people_affected),
             categories = coalesce($4, categories),
             reported_at = CASE WHEN $2 = 'reported' THEN coalesce(reported_at, now())
                                ELSE reported_at END,
             closed_at = CASE WHEN $2 = 'closed' THEN coalesce(closed_at, now())
                              ELSE closed_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(change.status.map(IncidentStatus::as_str))
    .bind(change.people_affected)
    .bind(categories)
    .execute(pool)
    .await
    .context("updating an incident")?;
    existing(pool, id).await
}

/// Who an incident's notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affected {
    /// Every subscriber of one Page (`pages.id`).
    Page(i64),
    /// Everybody we hold data about.
    Everyone,
}

/// What deciding a notice did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NoticeDecided {
    /// People owed the notice (everyone reachable among those affected).
    pub owed: i64,
    /// Notices queued now, for people inside their window; the others are told with the reply
    /// to their next message.
    pub queued: i64,
}

/// One incident notice to one person. Ids only; the incident row holds the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNoticeJob {
    /// `incidents.id`.
    pub incident_id: i64,
    /// The person.
    pub subscriber_id: i64,
    /// The event whose reply carries the notice; `None` when queued at the decision.
    pub reply_to: Option<i64>,
}

impl Job for IncidentNoticeJob {
    const KIND: &'static str = "incident";

    fn key(&self) -> String {
        match self.reply_to {
            None => format!("decided:{}:{}", self.incident_id, self.subscriber_id),
            Some(event) => format!("reply:{}:{}:{event}", self.incident_id, self.subscriber_id),
        }
    }

    fn subscriber_id(&self) -> Option<i64> {
        Some(self.subscriber_id)
    }
}

/// Decides to tell the people affected: records who they are (one set-based statement) and,
/// in the same transaction, queues the notice of everyone inside their window. Once per
/// incident: a second decision is a conflict. People Facebook reports unreachable are left out.
pub async fn decide_notice(
    pool: &PgPool,
    id: i64,
    affected: Affected,
    max_attempts: i32,
) -> Result<NoticeDecided, IncidentError> {
    let mut tx = pool.begin().await.context("starting an incident notice")?;
    let page_id = match affected {
        Affected::Page(page_id) => Some(page_id),
        Affected::Everyone => None,
    };
    if let Some(page_id) = page_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pages WHERE id = $1)")
            .bind(page_id)
            .fetch_one(&mut *tx)
            .await
            .context("finding the Page")?;
        if !exists {
            return Err(IncidentError::NotFound("page"));
        }
    }
    let decided: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT notice_decided_at FROM incidents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .context("reading an incident")?;
    match decided {
        None => return Err(IncidentError::NotFound("incident")),
        Some(Some(_)) => {
            return Err(IncidentError::Conflict(format!(
                "the notice of incident {id} was decided already"
            )));
        }
        Some(None) => {}
    }
    sqlx::query(
        "UPDATE incidents SET notice_decided_at = now(), notice_page_id = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(page_id)
    .execute(&mut *tx)
    .await
    .context("recording an incident notice")?;
    let owed: Vec<(i64, bool)> = sqlx::query_as(
        "WITH owed AS (
             INSERT INTO incident_notices (incident_id, subscriber_id)
             SELECT $1, s.id FROM subscribers s
             WHERE s.status <> 'unreachable' AND ($2::bigint IS NULL OR s.page_id = $2)
             RETURNING subscriber_id
         )
         SELECT s.id, in_messaging_window(s.last_interaction_at)
         FROM owed o JOIN subscribers s ON s.id = o.subscriber_id",
    )
    .bind(id)
    .bind(page_id)
    .fetch_all(&mut *tx)
    .await
    .context("recording who is owed an incident notice")?;
    let notices: Vec<IncidentNoticeJob> = owed
        .iter()
        .filter(|(_, in_window)| *in_window)
        .map(|&(subscriber_id, _)| IncidentNoticeJob {
            incident_id: id,
            subscriber_id,
            reply_to: None,
        })
        .collect();
    let queued = jobs::enqueue_many(&mut tx, &notices, Duration::ZERO, max_attempts)
        .await
        .context("queuing incident notices")?;
    tx.commit().await.context("committing an incident notice")?;
    Ok(NoticeDecided {
        owed: i64::try_from(owed.len()).unwrap_or(i64::MAX),
        queued: i64::try_from(queued).unwrap_or(i64::MAX),
    })
}

/// Queues every incident notice a person who just wrote to their Page is still owed: the reply
/// path for everyone who was outside their window when the notice was decided. Keyed by the
/// event; [`claim`] still lets only one job tell them.
pub async fn queue_for_reply(
    conn: &mut PgConnection,
    subscriber_id: i64,
    event_id: i64,
    max_attempts: i32,
) -> anyhow::Result<()> {
    let owed: Vec<i64> = sqlx::query_scalar(
        "SELECT incident_id FROM incident_notices
         WHERE subscriber_id = $1 AND told_at IS NULL",
    )
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .context("finding incident notices a person is owed")?;
    let notices: Vec<IncidentNoticeJob> = owed
        .into_iter()
        .map(|incident_id| IncidentNoticeJob {
            incident_id,
            subscriber_id,
            reply_to: Some(event_id),
        })
        .collect();
    jobs::enqueue_many(conn, &notices, Duration::ZERO, max_attempts)
        .await
        .context("queuing incident notices with a reply")?;
    Ok(())
}

/// What a claimed notice says.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// When it was detected.
    pub detected_at: DateTime<Utc>,
    /// What may have been exposed (as stored).
    pub categories: Vec<String>,
    /// What happened.
    pub description: String,
}

/// Claims the right to tell a person of an incident: marks them told, atomically, only when
/// they are owed it, reachable and inside their window. `None`: nothing to send now (told
/// already, or they will be told with their next reply). A send that dies half-way keeps the
/// claim: they may have seen it.
pub async fn claim(
    pool: &PgPool,
    incident_id: i64,
    subscriber_id: i64,
) -> anyhow::Result<Option<Claimed>> {
    sqlx::query_as(
        "WITH claimed AS (
             UPDATE incident_notices n SET told_at = now()
             FROM subscribers s
             WHERE n.incident_id = $1 AND n.subscriber_id = $2 AND n.told_at IS NULL
               AND s.id = n.subscriber_id AND s.status <> 'unreachable'
               AND in_messaging_window(s.last_interaction_at)
             RETURNING n.incident_id
         )
         SELECT i.detected_at, i.categories, i.description
         FROM claimed, incidents i WHERE i.id = claimed.incident_id",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .fetch_optional(pool)
    .await
    .context("claiming an incident notice")
}

/// Gives a claim back after a send that certainly did not reach the person.
pub async fn release(pool: &PgPool, incident_id: i64, subscriber_id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE incident_notices SET told_at = NULL WHERE incident_id = $1 AND subscriber_id = $2",
    )
    .bind(incident_id)
    .bind(subscriber_id)
    .execute(pool)
    .await
    .context("releasing an incident notice")?;
    Ok(())
}

/// The text of a notice: what happened, what data, and how to act.
pub fn notice_text(
    page_name: &str,
    claimed: &Claimed,
    export_keyword: &str,
    erase_keyword: &str,
) -> String {
    let what: Vec<&str> = DataCategory::ALL
        .into_iter()
        .filter(|c| claimed.categories.iter().any(|stored| stored == c.as_str()))
        .map(DataCategory::describe)
        .collect();
    format!(
        "Important notice from {page_name}: a security incident detected on {} may have \
         exposed data about you ({}). {} Reply \"{export_keyword}\" for a copy of the data we \
         hold, \"{erase_keyword}\" to have it deleted, or STOP to unsubscribe.",
        claimed.detected_at.format("%-d %B %Y"),
        what.join(", "),
        claimed.description
    )
}

/// Marks every open incident whose deadline falls within `hours` and was not announced yet, and
/// queues the admins' e-mail of each, in one transaction (once per incident, never lost).
pub async fn announce_deadline_near(pool: &PgPool, hours: i32) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool
        .begin()
        .await
        .context("starting the incident deadline check")?;
    let near: Vec<i64> = sqlx::query_scalar(
        "UPDATE incidents SET deadline_notified_at = now()
         WHERE status = 'open' AND deadline_notified_at IS NULL
           AND detected_at + make_interval(hours => $1) < now() + make_interval(hours => $2)
         RETURNING id",
    )
    .bind(i32::try_from(REPORT_DEADLINE_HOURS).unwrap_or(i32::MAX))
    .bind(hours)
    .fetch_all(&mut *tx)
    .await
    .context("finding incidents whose deadline nears")?;
    for &incident_id in &near {
        alerts::admin(&mut *tx, AdminEvent::IncidentDeadlineNear { incident_id }).await?;
    }
    tx.commit()
        .await
        .context("committing the incident deadline check")?;
    Ok(near)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_notice_fits_a_messenger_message() {
        let claimed = Claimed {
            detected_at: Utc::now(),
            categories: DataCategory::ALL.map(|c| c.as_str().to_owned()).to_vec(),
            description: "d".repeat(MAX_DESCRIPTION_CHARS),
        };
        let text = notice_text(
            &"p".repeat(100),
            &claimed,
            "export my data",
            "delete my data",
        );
        assert!(text.chars().count() <= 2_000, "{}", text.chars().count());
    }

    #[test]
    fn an_incident_needs_categories_a_count_and_a_past_detection() {
        let ok = NewIncident {
            detected_at: Utc::now(),
            categories: vec![DataCategory::MessengerIds],
            people_affected: 3,
            description: "A backup was readable by others.".into(),
        };
        assert!(ok.validate().is_ok());
        let none = NewIncident {
            categories: vec![],
            ..ok.clone()
        };
        assert!(matches!(
            none.validate(),
            Err(IncidentError::Invalid {
                field: "categories",
                ..
            })
        ));
        let future = NewIncident {
            detected_at: Utc::now() + chrono::Duration::days(1),
            ..ok
        };
        assert!(matches!(
            future.validate(),
            Err(IncidentError::Invalid {
                field: "detected_at",
                ..
            })
        ));
        assert!("leaked".parse::<DataCategory>().is_err());
    }
}
