//! Everything held about one person, as the machine-readable JSON of an export (GDPR Art. 15
//! and 20): profile, consent evidence, status and unsubscribes, delivery history, messages still
//! queued for them, and their open requests. Where each catalogued column appears is in
//! [`crate::catalog`] (its [`Export`](crate::catalog::Export)); the integration tests check the
//! document against it.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::crypto::{Keyring, SealedField};
use crate::dsr::{Channel, DsrStatus, DsrType, Status, Subject};
use crate::requests;
use crate::subject::Person;

/// Version of the export's layout, for whoever reads it with a program.
const FORMAT: &str = "moonengage-export/1";

/// What is never kept, so the export is complete by saying so.
const NOT_KEPT: &str = "The texts of your messages to the Page are never stored: each is read \
                        once to see whether it asks to unsubscribe or about your data, then \
                        dropped. No tracking data (opens, clicks, IP addresses) is collected.";

/// The export document.
#[derive(Debug, Serialize)]
pub struct Export {
    format: &'static str,
    generated_at: DateTime<Utc>,
    controller: Controller,
    profile: Profile,
    consent: Consent,
    subscription: Subscription,
    deliveries: Vec<Delivery>,
    queued_messages: Vec<Queued>,
    open_requests: Vec<OpenRequest>,
    not_kept: &'static str,
}

#[derive(Debug, Serialize)]
struct Controller {
    page_name: String,
    facebook_page_id: String,
}

#[derive(Debug, Serialize)]
struct Profile {
    page_scoped_id: String,
    first_name: Option<String>,
    first_seen_at: DateTime<Utc>,
    last_message_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct Consent {
    opted_in_at: DateTime<Utc>,
    source: String,
    /// SHA-256 of the id of the message that opted in (the message itself is not kept).
    first_message_id_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
struct Subscription {
    status: String,
    unsubscribed_at: Option<DateTime<Utc>>,
    /// `stop` (only a start keyword subscribes again) or `objection` (any new message does).
    unsubscribed_by: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Delivery {
    campaign_id: i64,
    campaign: String,
    status: String,
    reason: Option<String>,
    attempts: i32,
    first_attempt_at: DateTime<Utc>,
    last_update_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Queued {
    campaign_id: i64,
    campaign: String,
    not_before: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct OpenRequest {
    #[serde(rename = "type")]
    kind: DsrType,
    channel: Channel,
    status: DsrStatus,
    received_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    confirmation_code: String,
}

impl From<Status> for OpenRequest {
    fn from(s: Status) -> OpenRequest {
        OpenRequest {
            kind: s.kind,
            channel: s.channel,
            status: s.status,
            received_at: s.received_at,
            due_at: s.due_at,
            confirmation_code: s.confirmation_code,
        }
    }
}

/// Collects the export of `person` (read in the transaction `conn` is in).
pub async fn collect(
    conn: &mut PgConnection,
    keyring: &Keyring,
    person: &Person,
) -> anyhow::Result<Export> {
    let psid = keyring.open_string(SealedField::SubscriberPsid, &person.psid)?;
    let first_name = person
        .first_name
        .as_deref()
        .map(|sealed| keyring.open_string(SealedField::SubscriberFirstName, sealed))
        .transpose()?;
    let deliveries: Vec<Delivery> = sqlx::query_as(
        "SELECT d.campaign_id, c.name AS campaign, d.status, d.reason, d.attempts,
                d.created_at AS first_attempt_at, d.updated_at AS last_update_at
         FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id AND d.subscriber_id = $1
         WHERE c.page_id = $2 AND d.status <> 'queued' ORDER BY d.created_at, d.campaign_id",
    )
    .bind(person.subscriber_id)
    .bind(person.page_id)
    .fetch_all(&mut *conn)
    .await
    .context("reading the delivery history")?;
    let queued_messages: Vec<Queued> = sqlx::query_as(
        "SELECT c.id AS campaign_id, c.name AS campaign, j.run_at AS not_before
         FROM campaigns c JOIN deliveries j ON j.campaign_id = c.id AND j.subscriber_id = $1
         WHERE c.page_id = $2 AND j.status = 'queued'
         ORDER BY j.run_at",
    )
    .bind(person.subscriber_id)
    .bind(person.page_id)
    .fetch_all(&mut *conn)
    .await
    .context("reading queued messages")?;
    let open_requests = requests::open_about(
        conn,
        keyring,
        &Subject {
            page_id: person.page_id,
            subscriber_id: Some(person.subscriber_id),
            psid: Some(psid.clone()),
        },
    )
    .await?
    .into_iter()
    .map(OpenRequest::from)
    .collect();
    Ok(Export {
        format: FORMAT,
        generated_at: Utc::now(),
        controller: Controller {
            page_name: person.page_name.clone(),
            facebook_page_id: person.fb_page_id.clone(),
        },
        profile: Profile {
            page_scoped_id: psid,
            first_name,
            first_seen_at: person.created_at,
            last_message_at: person.last_interaction_at,
        },
        consent: Consent {
            opted_in_at: person.opted_in_at,
            source: person.consent_source.clone(),
            first_message_id_sha256: person.consent_mid_hash.as_deref().map(hex::encode),
        },
        subscription: Subscription {
            status: person.status.clone(),
            unsubscribed_at: person.unsubscribed_at,
            unsubscribed_by: person.unsubscribed_by.clone(),
        },
        deliveries,
        queued_messages,
        open_requests,
        not_kept: NOT_KEPT,
    })
}
