//! Pages: register (the token is sealed at rest), list, set the send rate, resume after a halt.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_core::pages::{self, NewPage, PageSummary, PageTaken};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// A Page to register, or re-register with a new token.
#[derive(Deserialize, ToSchema)]
pub(crate) struct RegisterPage {
    /// Facebook's id of the Page.
    #[schema(min_length = 1)]
    fb_page_id: String,
    /// Display name.
    #[schema(min_length = 1)]
    name: String,
    /// The Page access token; stored encrypted and never returned.
    #[schema(min_length = 1)]
    access_token: String,
    /// Messages per second (1-300, default 250).
    #[serde(default, deserialize_with = "schema::optional_integer")]
    #[schema(minimum = 1, maximum = 300)]
    send_rate: Option<i32>,
}

/// The id of a created resource.
#[derive(Serialize, ToSchema)]
pub(crate) struct Created {
    /// Its id.
    pub id: i64,
}

/// A Page as listed (no token).
#[derive(Serialize, ToSchema)]
pub(crate) struct PageView {
    id: i64,
    fb_page_id: String,
    name: String,
    send_rate: i32,
    /// `active` or `halted`.
    status: String,
    halted_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<PageSummary> for PageView {
    fn from(p: PageSummary) -> PageView {
        PageView {
            id: p.id,
            fb_page_id: p.fb_page_id,
            name: p.name,
            send_rate: p.send_rate,
            status: p.status.as_str().to_owned(),
            halted_reason: p.halted_reason,
            created_at: p.created_at,
        }
    }
}

/// A new send rate.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SendRate {
    /// Messages per second (1-300).
    #[serde(deserialize_with = "schema::integer")]
    #[schema(minimum = 1, maximum = 300)]
    send_rate: i32,
}

fn check_rate(rate: i32) -> Result<i32, ApiError> {
    pages::check_send_rate(rate).map_err(|error| ApiError::Unprocessable {
        code: "invalid_send_rate",
        message: error.to_string(),
    })
}

/// Registers a Page (or updates the one with this Facebook id).
#[utoipa::path(post, path = "/api/v1/pages", tag = "pages", request_body = RegisterPage,
    responses((status = 201, body = Created), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<RegisterPage>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    principal.require(Role::Admin)?;
    let invalid = |field: &str| ApiError::Unprocessable {
        code: "invalid_page",
        message: format!("{field} must not be empty"),
    };
    if body.fb_page_id.trim().is_empty() {
        return Err(invalid("fb_page_id"));
    }
    if body.name.trim().is_empty() {
        return Err(invalid("name"));
    }
    if body.access_token.trim().is_empty() {
        return Err(invalid("access_token"));
    }
    let send_rate = check_rate(body.send_rate.unwrap_or(pages::DEFAULT_SEND_RATE))?;
    let id = pages::register(
        &state.pool,
        &state.keyring,
        &NewPage {
            workspace_id: principal.workspace_id,
            fb_page_id: body.fb_page_id.trim(),
            name: body.name.trim(),
            access_token: &SecretString::from(body.access_token),
            send_rate,
        },
    )
    .await
    .map_err(|error| match error.downcast::<PageTaken>() {
        Ok(taken) => ApiError::Conflict(taken.to_string()),
        Err(error) => ApiError::Internal(error),
    })?;
    tracing::info!(page_id = id, "page registered");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// Lists the workspace's Pages.
#[utoipa::path(get, path = "/api/v1/pages", tag = "pages",
    responses((status = 200, body = Vec<PageView>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<PageView>>, ApiError> {
    let pages = pages::list(&state.pool, principal.workspace_id).await?;
    Ok(Json(pages.into_iter().map(PageView::from).collect()))
}

/// Sets a Page's send rate.
#[utoipa::path(put, path = "/api/v1/pages/{id}/send_rate", tag = "pages",
    params(("id" = i64, Path, description = "Page id")), request_body = SendRate,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn set_send_rate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<SendRate>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let rate = check_rate(body.send_rate)?;
    if pages::set_send_rate(&state.pool, principal.workspace_id, id, rate).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("page"))
    }
}

/// Resumes a halted Page and the campaigns its halt paused (not those an admin paused).
#[utoipa::path(post, path = "/api/v1/pages/{id}/resume", tag = "pages",
    params(("id" = i64, Path, description = "Page id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    principal.require(Role::Admin)?;
    let resumed = pages::resume(&state.pool, principal.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("page"))?;
    tracing::info!(page_id = id, campaigns = resumed.len(), "page resumed");
    Ok(StatusCode::NO_CONTENT)
}
