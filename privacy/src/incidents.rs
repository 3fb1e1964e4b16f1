//! The breach register (GDPR Art. 33/34). An admin declares a personal-data breach (when it was
//! detected, which categories of data, how many people); the supervisory authority must be
//! informed within [`REPORT_DEADLINE_HOURS`] of detection, which a gauge and an alert watch and
//! admins are e-mailed about (at declaration, and once when the deadline nears).
//!
//! When an admin decides the people affected must be told, they name them: every subscriber of
//! one Page, or everybody we hold data about. Each is owed the notice in `incident_notices`;
//! people inside their 24-hour window are told at once, the others with the reply to their next
//! message (the only way Messenger allows), exactly as privacy-policy notices are.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use moonengage_ops::alerts::{self, AdminEvent};

mod fields;
mod notice;

pub use fields::{DataCategory, IncidentStatus};

pub use notice::{
    Affected, Claimed, IncidentNoticeJob, NoticeDecided, claim, decide_notice, notice_text,
    queue_for_reply, release,
};

/// Hours from detection within which the authority must be informed (GDPR Art. 33(1)).
pub const REPORT_DEADLINE_HOURS: i64 = 72;
/// Longest description accepted: it goes into the people's notice, which must stay well inside
/// Messenger's 2,000 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;

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
    /// No incident with this id.
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
mod tests;
