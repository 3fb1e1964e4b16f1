//! Campaigns: create (the template is checked first), schedule, pause, resume, cancel, and read
//! live counters.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_core::campaigns::{self, CampaignState, Progress};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pages::Created;
use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// A campaign to create.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewCampaign {
    /// The Page it is sent from.
    #[serde(deserialize_with = "schema::integer")]
    page_id: i64,
    /// Name shown to admins.
    name: String,
    /// Handlebars text; `{{page_name}}` and `{{first_name default="there"}}` (with a fallback
    /// for people whose name is not known, or inside `{{#if first_name}}`) are available.
    template: String,
}

/// When to start.
#[derive(Deserialize, ToSchema)]
pub(crate) struct Schedule {
    /// RFC 3339 time; now when absent.
    at: Option<DateTime<Utc>>,
}

/// A campaign's state and counters (live while it runs).
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignView {
    id: i64,
    /// `draft`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
    state: String,
    /// Whether every recipient has been queued or skipped.
    fanout_done: bool,
    recipients: i64,
    sent: i64,
    skipped: i64,
    failed: i64,
    unknown: i64,
    /// Recipients with a final outcome.
    finished: i64,
    /// `finished / recipients`, 0-100 (100 once completed).
    progress_percent: f64,
}

impl From<Progress> for CampaignView {
    fn from(p: Progress) -> CampaignView {
        let finished = p.finished();
        let progress_percent = if p.state == CampaignState::Completed {
            100.0
        } else if p.recipients > 0 {
            (finished as f64 * 100.0 / p.recipients as f64).min(100.0)
        } else {
            0.0
        };
        CampaignView {
            id: p.id,
            state: p.state.as_str().to_owned(),
            fanout_done: p.fanout_done,
            recipients: p.recipients,
            sent: p.sent,
            skipped: p.skipped,
            failed: p.failed,
            unknown: p.unknown,
            finished,
            progress_percent,
        }
    }
}

/// Creates a draft campaign; a broken template is refused with 422 `invalid_template`.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = NewCampaign,
    responses((status = 201, body = Created), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewCampaign>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    principal.require(Role::Admin)?;
    let id = campaigns::create(
        &state.pool,
        &campaigns::NewCampaign {
            workspace_id: principal.workspace_id,
            page_id: body.page_id,
            name: &body.name,
            template: &body.template,
        },
    )
    .await?;
    tracing::info!(campaign_id = id, page_id = body.page_id, "campaign created");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// Reads a campaign's state, counters and progress.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CampaignView>, ApiError> {
    let progress = campaigns::progress(&state.pool, principal.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("campaign"))?;
    Ok(Json(progress.into()))
}

/// Schedules a draft (or reschedules a scheduled) campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/schedule", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")), request_body = Schedule,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn schedule(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Schedule>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let at = body.at.unwrap_or_else(Utc::now);
    campaigns::schedule(&state.pool, principal.workspace_id, id, at).await?;
    tracing::info!(campaign_id = id, "campaign scheduled");
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a running or scheduled campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    campaigns::pause(&state.pool, principal.workspace_id, id).await?;
    tracing::info!(campaign_id = id, "campaign paused");
    Ok(StatusCode::NO_CONTENT)
}

/// Resumes a paused campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    campaigns::resume(&state.pool, principal.workspace_id, id).await?;
    tracing::info!(campaign_id = id, "campaign resumed");
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a campaign: queued messages are not sent and count as skipped (`cancelled`).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = i64, Path, description = "Campaign id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    campaigns::cancel(&state.pool, principal.workspace_id, id).await?;
    tracing::info!(campaign_id = id, "campaign cancelled");
    Ok(StatusCode::NO_CONTENT)
}
