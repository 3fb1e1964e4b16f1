//! Bearer tokens: every API call is checked against the stored hashes, so a revoked token
//! (logged out) is refused from the next request on.

use axum::Extension;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use moonengage_core::admin_tokens;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// The token a request was authorised with (its id), for logging out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenId(i64);

/// Refuses a request without a live bearer token.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| SecretString::from(token.trim().to_owned()))
        .ok_or(ApiError::Unauthorized)?;
    let id = admin_tokens::authenticate(&state.pool, &token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(TokenId(id));
    Ok(next.run(request).await)
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewToken {
    /// Who or what will use it.
    name: String,
}

/// A created token: shown once, stored only as a hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    /// Id, to revoke it.
    id: i64,
    /// The bearer token.
    token: String,
}

/// Creates an admin token.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::Unprocessable {
            code: "invalid_name",
            message: "name must not be empty".into(),
        });
    }
    let created = admin_tokens::create(&state.pool, body.name.trim()).await?;
    tracing::info!(token_id = created.id, "admin token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: created.id,
            token: created.token.expose_secret().to_owned(),
        }),
    ))
}

/// Revokes a token; effective at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if admin_tokens::revoke(&state.pool, id).await? {
        tracing::info!(token_id = id, "admin token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token"))
    }
}

/// Logs out: revokes the token this request carries.
#[utoipa::path(post, path = "/api/v1/logout", tag = "tokens",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(TokenId(id)): Extension<TokenId>,
) -> Result<StatusCode, ApiError> {
    admin_tokens::revoke(&state.pool, id).await?;
    tracing::info!(token_id = id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}
