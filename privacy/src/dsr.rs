//! Data-subject requests (export, erasure, objection): filing one records an audit row without
//! personal data, seals who it is about, and queues the job that carries it out — together.

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};

use crate::crypto::{Keyring, SealedField};
use moonengage_queue::{Job, jobs};

/// GDPR Art. 12(3): a request is answered within one month; we hold ourselves to 30 days.
const DEADLINE_DAYS: i64 = 30;
/// Length of a confirmation code: 36^16 makes guessing another person's code hopeless.
const CODE_LEN: usize = 16;

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

/// What the person asks for (`dsr_requests.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DsrType {
    /// A machine-readable copy of their data (Art. 15/20).
    Export,
    /// Erasure of every row about them (Art. 17).
    Erasure,
    /// An objection to processing (Art. 21).
    Objection,
}

impl DsrType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DsrType::Export => "export",
            DsrType::Erasure => "erasure",
            DsrType::Objection => "objection",
        }
    }
}

/// How the request reached us (`dsr_requests.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Channel {
    /// A keyword or postback in the conversation with the Page.
    Messenger,
    /// Facebook's data-deletion request callback.
    FacebookCallback,
    /// Filed by an admin on the person's behalf.
    Admin,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Messenger => "messenger",
            Channel::FacebookCallback => "facebook_callback",
            Channel::Admin => "admin",
        }
    }
}

/// Where a request is (`dsr_requests.status`; the SQL of `requests` names the same values):
/// `received → processing → completed`, or `refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DsrStatus {
    /// Filed, not picked up yet.
    Received,
    /// Its job is carrying it out.
    Processing,
    /// Answered.
    Completed,
    /// Not carried out, with the reason in the outcome.
    Refused,
}

impl DsrStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DsrStatus::Received => "received",
            DsrStatus::Processing => "processing",
            DsrStatus::Completed => "completed",
            DsrStatus::Refused => "refused",
        }
    }
}

/// Who a request is about: what the job needs to find every row about them. Sealed at rest;
/// `Debug` omits the PSID.
#[derive(Clone, Serialize, Deserialize)]
pub struct Subject {
    /// The Page the person talks to.
    pub page_id: i64,
    /// Their subscriber row, when they have one.
    pub subscriber_id: Option<i64>,
    /// Their page-scoped id, when known (someone with no subscriber row may still ask).
    pub psid: Option<String>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("page_id", &self.page_id)
            .field("subscriber_id", &self.subscriber_id)
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// Opens a sealed `subject_ref`.
    pub fn open(keyring: &Keyring, sealed: &[u8]) -> anyhow::Result<Subject> {
        let json = keyring
            .open(SealedField::DsrSubject, sealed)
            .context("opening a request's subject")?;
        serde_json::from_slice(&json).context("reading a request's subject")
    }
}

/// A request just filed.
#[derive(Debug, Clone, Serialize)]
pub struct Filed {
    /// `dsr_requests.id`.
    pub id: i64,
    /// What the person (or the admin) quotes to ask about it.
    pub confirmation_code: String,
    /// When it must be answered by.
    pub due_at: DateTime<Utc>,
}

/// A random alphanumeric confirmation code.
fn confirmation_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..CODE_LEN)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Records a request and queues its job, and the admins' e-mail about it, atomically (a
/// savepoint when `conn` is already in a transaction).
pub async fn file(
    conn: &mut PgConnection,
    keyring: &Keyring,
    kind: DsrType,
    channel: Channel,
    subject: &Subject,
    max_attempts: i32,
) -> anyhow::Result<Filed> {
    let sealed = keyring.seal(
        SealedField::DsrSubject,
        &serde_json::to_vec(subject).context("encoding a request's subject")?,
    );
    record(
        conn,
        kind,
        channel,
        sealed,
        Some(subject.page_id),
        max_attempts,
    )
    .await
}

/// [`file()`] for a subject already sealed (context [`SealedField::DsrSubject`]): Facebook's
/// data-deletion callback names a person by an app-scoped id, not by a Page and PSID, so the
/// request is the platform's (no workspace; operators see it).
pub async fn file_sealed(
    conn: &mut PgConnection,
    kind: DsrType,
    channel: Channel,
    sealed: Vec<u8>,
    max_attempts: i32,
) -> anyhow::Result<Filed> {
    record(conn, kind, channel, sealed, None, max_attempts).await
}

/// Records a request (in the workspace of the Page it is about, or the platform's when it names
/// no Page) with its job and the admins' e-mail.
async fn record(
    conn: &mut PgConnection,
    kind: DsrType,
    channel: Channel,
    sealed: Vec<u8>,
    page_id: Option<i64>,
    max_attempts: i32,
) -> anyhow::Result<Filed> {
    let code = confirmation_code();
    let mut tx = conn.begin().await.context("starting to file a request")?;
    let (id, due_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO dsr_requests (type, channel, due_at, confirmation_code, subject_ref,
                                   workspace_id)
         VALUES ($1, $2, now() + make_interval(days => $3), $4, $5,
                 (SELECT workspace_id FROM pages WHERE id = $6))
         RETURNING id, due_at",
    )
    .bind(kind.as_str())
    .bind(channel.as_str())
    .bind(DEADLINE_DAYS as i32)
    .bind(&code)
    .bind(sealed)
    .bind(page_id)
    .fetch_one(&mut *tx)
    .await
    .context("recording a data-subject request")?;
    jobs::enqueue(&mut *tx, &DsrJob { request_id: id }, max_attempts).await?;
    moonengage_ops::alerts::admin(
        &mut *tx,
        moonengage_ops::alerts::AdminEvent::DsrReceived { request_id: id },
    )
    .await?;
    tx.commit().await.context("committing a request")?;
    moonengage_ops::metrics::dsr_received(kind.as_str());
    Ok(Filed {
        id,
        confirmation_code: code,
        due_at,
    })
}

/// The audit view of a request: no personal data.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Status {
    /// `dsr_requests.id`.
    pub id: i64,
    /// What was asked for.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: DsrType,
    /// How it reached us.
    pub channel: Channel,
    /// Where it is.
    pub status: DsrStatus,
    /// When it was filed.
    pub received_at: DateTime<Utc>,
    /// When it must be answered by.
    pub due_at: DateTime<Utc>,
    /// When it was answered.
    pub completed_at: Option<DateTime<Utc>>,
    /// What was done, or why it was refused.
    pub outcome: Option<String>,
    /// The code the person quotes.
    pub confirmation_code: String,
}

/// The audit columns of a request, as [`Status`] reads them.
pub(crate) const STATUS_SELECT: &str = "SELECT id, type, channel, status, received_at, due_at,
    completed_at, outcome, confirmation_code FROM dsr_requests";

/// Whose requests a caller reaches: those of their workspace, and, for MoonEngage's operators,
/// the platform-level ones too (no workspace: Facebook's data-deletion callback, app-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// The caller's workspace.
    pub workspace_id: i64,
    /// Whether platform-level requests are reached (operators only).
    pub platform: bool,
}

/// The condition a request (`dsr_requests`, parameters `$1` the request id, `$2` and `$3` the
/// [`Reach`]) must meet to be reached.
pub(crate) const REACHED: &str = "id = $1 AND (workspace_id = $2 OR ($3 AND workspace_id IS NULL))";

/// Reads the status of a request the caller reaches; `None` for one they do not.
pub async fn status(pool: &PgPool, reach: Reach, id: i64) -> anyhow::Result<Option<Status>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{STATUS_SELECT} WHERE {REACHED}"
    )))
    .bind(id)
    .bind(reach.workspace_id)
    .bind(reach.platform)
    .fetch_optional(pool)
    .await
    .context("reading a data-subject request")
}
