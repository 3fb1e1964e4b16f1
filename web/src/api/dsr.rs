//! Data-subject requests filed by an admin on a person's behalf, and their status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_core::pages;
use moonengage_privacy::dsr::{self, Channel, DsrType, Reach, Subject};
use moonengage_privacy::export_link::{self, ReissueError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// A request to file.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewRequest {
    /// `export`, `erasure` or `objection`.
    #[serde(rename = "type")]
    #[schema(schema_with = schema::request_type)]
    kind: DsrType,
    /// The Page the person talks to.
    #[serde(deserialize_with = "schema::integer")]
    page_id: i64,
    /// The person's page-scoped id.
    #[schema(min_length = 1)]
    psid: String,
}

/// A filed request.
#[derive(Serialize, ToSchema)]
pub(crate) struct FiledView {
    id: i64,
    /// What the person quotes to ask about it.
    confirmation_code: String,
    /// When it must be answered by.
    due_at: DateTime<Utc>,
}

/// The audit view of a request (no personal data).
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusView {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    channel: String,
    /// `received`, `processing`, `completed` or `refused`.
    status: String,
    received_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
    confirmation_code: String,
}

/// Files a request on a person's behalf; it is queued and answered within 30 days.
#[utoipa::path(post, path = "/api/v1/dsr", tag = "data-subject requests", request_body = NewRequest,
    responses((status = 201, body = FiledView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewRequest>,
) -> Result<(StatusCode, Json<FiledView>), ApiError> {
    principal.require(Role::Admin)?;
    let psid = body.psid.trim();
    if psid.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "invalid_request",
            message: "psid must not be empty".into(),
        });
    }
    let fb_page_id = pages::fb_page_id(&state.pool, principal.workspace_id, body.page_id)
        .await?
        .ok_or(ApiError::NotFound("page"))?;
    let subscriber_id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM subscribers WHERE workspace_id = $1 AND page_id = $2 AND psid_index = $3",
    )
    .bind(principal.workspace_id)
    .bind(body.page_id)
    .bind(state.keyring.blind_index(&fb_page_id, psid))
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| anyhow::Error::new(e).context("finding the subject"))?;
    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| anyhow::Error::new(e).context("filing a request"))?;
    let filed = dsr::file(
        &mut conn,
        &state.keyring,
        body.kind,
        Channel::Admin,
        &Subject {
            page_id: body.page_id,
            subscriber_id,
            psid: Some(psid.to_owned()),
        },
        state.settings.queue.max_attempts,
    )
    .await?;
    tracing::info!(
        request_id = filed.id,
        kind = body.kind.as_str(),
        "request filed by admin"
    );
    Ok((
        StatusCode::CREATED,
        Json(FiledView {
            id: filed.id,
            confirmation_code: filed.confirmation_code,
            due_at: filed.due_at,
        }),
    ))
}

/// What a principal reaches of the requests: their workspace's, and operators the
/// platform-level ones too.
fn reach(principal: &Principal) -> Reach {
    Reach {
        workspace_id: principal.workspace_id,
        platform: principal.operator,
    }
}

/// Reads a request's status: one of the workspace's (operators: or a platform-level one).
#[utoipa::path(get, path = "/api/v1/dsr/{id}", tag = "data-subject requests",
    params(("id" = i64, Path, description = "Request id")),
    responses((status = 200, body = StatusView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<StatusView>, ApiError> {
    let s = dsr::status(&state.pool, reach(&principal), id)
        .await?
        .ok_or(ApiError::NotFound("request"))?;
    Ok(Json(StatusView {
        id: s.id,
        kind: s.kind.as_str().to_owned(),
        channel: s.channel.as_str().to_owned(),
        status: s.status.as_str().to_owned(),
        received_at: s.received_at,
        due_at: s.due_at,
        completed_at: s.completed_at,
        outcome: s.outcome,
        confirmation_code: s.confirmation_code,
    }))
}

/// Re-issues the download link of an export that is still held: the export gets a new link
/// (the old one stops working), sent at once inside the person's 24-hour window, else with the
/// reply to their next message.
#[utoipa::path(post, path = "/api/v1/dsr/{id}/export-link", tag = "data-subject requests",
    params(("id" = i64, Path, description = "Request id of the export")),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn reissue_export_link(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let max_attempts = state.settings.queue.max_attempts;
    export_link::reissue(&state.pool, reach(&principal), id, max_attempts)
        .await
        .map_err(|error| match error {
            ReissueError::NoSuchRequest(_) => ApiError::NotFound("request"),
            ReissueError::NotHeld(_) => ApiError::Conflict(error.to_string()),
            ReissueError::Database(error) => ApiError::Internal(error),
        })?;
    tracing::info!(request_id = id, "export link re-issued");
    Ok(StatusCode::ACCEPTED)
}
