//! Maintenance access, in owners' hands: grant a named MoonEngage operator time-limited access
//! with a reason, list the grants, revoke one at once. Every use of it is in the owners'
//! activity; they are e-mailed when it is granted, first used and ended.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use moonengage_accounts::maintenance::{self, Grant, GrantError, NewGrant};
use moonengage_accounts::{Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> ApiError {
        match error {
            GrantError::Role(forbidden) => ApiError::Role(forbidden),
            GrantError::NotFound => ApiError::NotFound("maintenance grant"),
            GrantError::NotAnOperator | GrantError::Hours | GrantError::Reason => {
                ApiError::Unprocessable {
                    code: "invalid_grant",
                    message: error.to_string(),
                }
            }
            GrantError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// Access to grant.
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewGrantBody {
    /// The operator's e-mail.
    operator_email: String,
    /// How long, in hours (default `accounts.maintenance_hours`, at most 168).
    hours: Option<i64>,
    /// Why: shown to every owner and in the e-mails.
    reason: String,
}

/// A grant.
#[derive(Serialize, ToSchema)]
pub(crate) struct GrantItem {
    /// Its id, to revoke it.
    id: i64,
    /// The operator's e-mail.
    operator_email: String,
    /// Why it was given.
    reason: String,
    /// When.
    created_at: DateTime<Utc>,
    /// When it runs out.
    expires_at: DateTime<Utc>,
    /// When it was revoked.
    revoked_at: Option<DateTime<Utc>>,
    /// When the operator first used it.
    first_used_at: Option<DateTime<Utc>>,
}

impl From<Grant> for GrantItem {
    fn from(g: Grant) -> GrantItem {
        GrantItem {
            id: g.id,
            operator_email: g.operator_email,
            reason: g.reason,
            created_at: g.created_at,
            expires_at: g.expires_at,
            revoked_at: g.revoked_at,
            first_used_at: g.first_used_at,
        }
    }
}

/// Grants an operator maintenance access. Owner only.
#[utoipa::path(post, path = "/api/v1/maintenance", tag = "maintenance",
    request_body = NewGrantBody,
    responses((status = 201, body = GrantItem), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn grant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewGrantBody>,
) -> Result<(StatusCode, Json<GrantItem>), ApiError> {
    let new = NewGrant {
        operator_email: &body.operator_email,
        hours: body
            .hours
            .unwrap_or(state.settings.accounts.maintenance_hours),
        reason: &body.reason,
    };
    let granted = maintenance::grant(&state.pool, &principal, new).await?;
    tracing::info!(grant_id = granted.id, "maintenance access granted");
    Ok((StatusCode::CREATED, Json(granted.into())))
}

/// Lists the workspace's maintenance grants, newest first. Owner only.
#[utoipa::path(get, path = "/api/v1/maintenance", tag = "maintenance",
    responses((status = 200, body = Vec<GrantItem>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<GrantItem>>, ApiError> {
    principal.require(Role::Owner)?;
    let grants = maintenance::list(&state.pool, principal.workspace_id).await?;
    Ok(Json(grants.into_iter().map(GrantItem::from).collect()))
}

/// Revokes a live grant at once. Owner only.
#[utoipa::path(delete, path = "/api/v1/maintenance/{id}", tag = "maintenance",
    params(("id" = i64, Path, description = "Grant id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    maintenance::revoke(&state.pool, &principal, id).await?;
    tracing::info!(grant_id = id, "maintenance access revoked");
    Ok(StatusCode::NO_CONTENT)
}
