//! The breach register (see `moonengage_privacy::incidents`): declare an incident, update it, list
//! the register, and decide to tell the people affected through Messenger.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_privacy::incidents::{
    self, Affected, DataCategory, Incident, IncidentError, IncidentStatus, IncidentUpdate,
    NewIncident,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// An incident to declare.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DeclareIncident {
    /// When the breach was detected; the 72 hours to inform the authority run from here.
    detected_at: DateTime<Utc>,
    /// Categories of data: `messenger_ids`, `first_names`, `consent_evidence`,
    /// `delivery_records`, `data_requests`, `page_tokens`.
    #[schema(schema_with = schema::categories)]
    categories: Vec<String>,
    /// How many people are affected (an estimate; update it later).
    #[serde(deserialize_with = "schema::integer")]
    #[schema(minimum = 0)]
    people_affected: i32,
    /// What happened, without naming anybody (people read it if they are told; at most 1,000
    /// characters).
    #[schema(min_length = 1, max_length = 1000)]
    description: String,
}

/// A change to an incident; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateIncident {
    /// `open`, `reported` (the authority is informed) or `closed`; forward only.
    #[schema(schema_with = schema::incident_status)]
    status: Option<String>,
    /// A firmer count.
    #[serde(default, deserialize_with = "schema::optional_integer")]
    #[schema(minimum = 0)]
    people_affected: Option<i32>,
    /// A fuller list of categories.
    #[schema(schema_with = schema::optional_categories)]
    categories: Option<Vec<String>>,
}

/// Who is told of an incident.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NoticeRequest {
    /// The Page whose subscribers are affected; `null` or absent: everybody we hold data about.
    #[serde(default, deserialize_with = "schema::optional_integer")]
    page_id: Option<i64>,
}

/// An incident of the register.
#[derive(Serialize, ToSchema)]
pub(crate) struct IncidentView {
    id: i64,
    detected_at: DateTime<Utc>,
    /// When the authority must be informed by (72 hours after detection).
    report_deadline: DateTime<Utc>,
    categories: Vec<String>,
    people_affected: i32,
    description: String,
    /// `open`, `reported` or `closed`.
    status: String,
    declared_at: DateTime<Utc>,
    reported_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    /// When an admin decided to tell the people affected.
    notice_decided_at: Option<DateTime<Utc>>,
    /// The Page whose subscribers are told; `null` with a decision: everybody.
    notice_page_id: Option<i64>,
    /// People owed the notice, and told so far.
    notices_owed: i64,
    notices_told: i64,
}

impl From<Incident> for IncidentView {
    fn from(i: Incident) -> IncidentView {
        IncidentView {
            id: i.id,
            detected_at: i.detected_at,
            report_deadline: i.report_deadline,
            categories: i.categories.iter().map(|c| c.as_str().to_owned()).collect(),
            people_affected: i.people_affected,
            description: i.description,
            status: i.status.as_str().to_owned(),
            declared_at: i.declared_at,
            reported_at: i.reported_at,
            closed_at: i.closed_at,
            notice_decided_at: i.notice_decided_at,
            notice_page_id: i.notice_page_id,
            notices_owed: i.notices_owed,
            notices_told: i.notices_told,
        }
    }
}

/// What deciding a notice did.
#[derive(Serialize, ToSchema)]
pub(crate) struct NoticeView {
    /// People owed the notice.
    owed: i64,
    /// Notices queued now (people inside their 24-hour window); the others are told with the
    /// reply to their next message.
    queued: i64,
}

impl From<IncidentError> for ApiError {
    fn from(error: IncidentError) -> ApiError {
        match error {
            IncidentError::Invalid { .. } => ApiError::Unprocessable {
                code: "invalid_incident",
                message: error.to_string(),
            },
            IncidentError::NotFound(what) => ApiError::NotFound(what),
            IncidentError::Conflict(message) => ApiError::Conflict(message),
            IncidentError::Database(error) => ApiError::Internal(error),
        }
    }
}

fn categories(names: &[String]) -> Result<Vec<DataCategory>, ApiError> {
    Ok(names
        .iter()
        .map(|name| name.parse::<DataCategory>())
        .collect::<Result<_, _>>()?)
}

/// Declares an incident; admins are e-mailed at once.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", request_body = DeclareIncident,
    responses((status = 201, body = IncidentView),
              (status = 404, body = ErrorBody, description = "Not an operator"),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn declare(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<DeclareIncident>,
) -> Result<(StatusCode, Json<IncidentView>), ApiError> {
    principal.require_operator()?;
    principal.require(Role::Admin)?;
    let incident = incidents::declare(
        &state.pool,
        &NewIncident {
            detected_at: body.detected_at,
            categories: categories(&body.categories)?,
            people_affected: body.people_affected,
            description: body.description,
        },
    )
    .await?;
    tracing::warn!(incident_id = incident.id, "incident declared");
    Ok((StatusCode::CREATED, Json(incident.into())))
}

/// Lists the register, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents",
    responses((status = 200, body = Vec<IncidentView>),
              (status = 404, body = ErrorBody, description = "Not an operator")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    principal.require_operator()?;
    let register = incidents::list(&state.pool).await?;
    Ok(Json(register.into_iter().map(Into::into).collect()))
}

/// Reads one incident.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path, description = "Incident id")),
    responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IncidentView>, ApiError> {
    principal.require_operator()?;
    let incident = incidents::get(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("incident"))?;
    Ok(Json(incident.into()))
}

/// Updates an incident: mark it `reported` once the authority is informed, `closed` when dealt
/// with, or firm up its count and categories.
#[utoipa::path(patch, path = "/api/v1/incidents/{id}", tag = "incidents", request_body = UpdateIncident,
    params(("id" = i64, Path, description = "Incident id")),
    responses((status = 200, body = IncidentView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateIncident>,
) -> Result<Json<IncidentView>, ApiError> {
    principal.require_operator()?;
    principal.require(Role::Admin)?;
    let change = IncidentUpdate {
        status: body
            .status
            .as_deref()
            .map(str::parse::<IncidentStatus>)
            .transpose()?,
        people_affected: body.people_affected,
        categories: body.categories.as_deref().map(categories).transpose()?,
    };
    let incident = incidents::update(&state.pool, id, &change).await?;
    tracing::info!(
        incident_id = id,
        status = incident.status.as_str(),
        "incident updated"
    );
    Ok(Json(incident.into()))
}

/// Decides to tell the people affected through Messenger: those inside their 24-hour window at
/// once, the others with the reply to their next message. Once per incident.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/notice", tag = "incidents", request_body = NoticeRequest,
    params(("id" = i64, Path, description = "Incident id")),
    responses((status = 202, body = NoticeView), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn notice(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NoticeRequest>,
) -> Result<(StatusCode, Json<NoticeView>), ApiError> {
    principal.require_operator()?;
    principal.require(Role::Admin)?;
    let affected = body.page_id.map_or(Affected::Everyone, Affected::Page);
    let decided =
        incidents::decide_notice(&state.pool, id, affected, state.settings.queue.max_attempts)
            .await?;
    tracing::info!(
        incident_id = id,
        owed = decided.owed,
        queued = decided.queued,
        "incident notice decided"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(NoticeView {
            owed: decided.owed,
            queued: decided.queued,
        }),
    ))
}
