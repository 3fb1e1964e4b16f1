//! The caller's own account: changing the password or the login e-mail, each confirmed with the
//! current password, recorded in the activity and e-mailed (an e-mail change to the old address
//! too).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use moonengage_accounts::Principal;
use moonengage_accounts::me::{self, ChangeError};
use moonengage_accounts::origin::Origin;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> ApiError {
        match error {
            ChangeError::WrongPassword => ApiError::Forbidden("the current password is wrong"),
            ChangeError::Password(rule) => ApiError::Unprocessable {
                code: "weak_password",
                message: rule.to_string(),
            },
            ChangeError::Email(invalid) => ApiError::Unprocessable {
                code: "invalid_email",
                message: invalid.to_string(),
            },
            ChangeError::EmailTaken => ApiError::Conflict(error.to_string()),
            ChangeError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// A new password.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    /// Your password now.
    #[schema(value_type = String)]
    current_password: SecretString,
    /// The new one: at least 12 characters, not a common password.
    #[schema(value_type = String)]
    new_password: SecretString,
}

/// Changes your password.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    me::change_password(
        &state.pool,
        principal.user_id,
        body.current_password,
        body.new_password,
        &Origin::default(),
    )
    .await?;
    tracing::info!("password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// A new login e-mail.
#[derive(Deserialize, ToSchema)]
pub(crate) struct EmailChange {
    /// Your password.
    #[schema(value_type = String)]
    password: SecretString,
    /// The new address.
    new_email: String,
}

/// Changes your login e-mail; both the old and the new address are told.
#[utoipa::path(post, path = "/api/v1/me/email", tag = "me", request_body = EmailChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn change_email(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<EmailChange>,
) -> Result<StatusCode, ApiError> {
    me::change_email(
        &state.pool,
        principal.user_id,
        body.password,
        &body.new_email,
        &Origin::default(),
    )
    .await?;
    tracing::info!("login e-mail changed");
    Ok(StatusCode::NO_CONTENT)
}
