//! The workspace itself: cancelling it, which deletes everything of it.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use moonengage_accounts::Principal;
use moonengage_accounts::cancellation::{self, CancelError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::client::ClientOrigin;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// The confirmation a cancellation needs.
#[derive(Deserialize, ToSchema)]
pub(crate) struct Cancel {
    /// The workspace's exact name.
    confirm: String,
}

/// Cancels the workspace: every access ends at once, and a queued job deletes everything of
/// it (Pages, subscribers, campaigns, requests, exports, tokens, members who belong nowhere
/// else), then e-mails the owners a confirmation. Owner only; confirm with the name.
#[utoipa::path(post, path = "/api/v1/workspace/cancel", tag = "workspace", request_body = Cancel,
    responses((status = 202), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ClientOrigin(origin): ClientOrigin,
    ApiJson(body): ApiJson<Cancel>,
) -> Result<StatusCode, ApiError> {
    cancellation::request(&state.pool, &principal, &body.confirm, &origin)
        .await
        .map_err(|error| match error {
            CancelError::Role(forbidden) => ApiError::Role(forbidden),
            CancelError::Confirmation => ApiError::Unprocessable {
                code: "confirmation_mismatch",
                message: error.to_string(),
            },
            CancelError::Internal(error) => ApiError::Internal(error),
        })?;
    tracing::info!(workspace_id = principal.workspace_id, "workspace cancelled");
    Ok(StatusCode::ACCEPTED)
}
