//! Who is calling: every API request carries a member's personal token, checked against the
//! stored hashes on each request (so a revoked or expired token, a removed member or a
//! cancelled workspace is refused from the next request on). The request then acts as the
//! token's [`Principal`]: in its workspace, with its role. Members manage their own tokens here.

use axum::Extension;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::alerts::{self, AccountAlert};
use moonengage_accounts::origin::Origin;
use moonengage_accounts::tokens::{self, CreateError, TokenView};
use moonengage_accounts::{Principal, Role, Via};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

/// Refuses a request without a live bearer token; otherwise the request carries its
/// [`Principal`].
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
    let principal = tokens::authenticate(&state.pool, &token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewToken {
    /// Who or what will use it (at most 200 characters).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Its role; at most your own, which is the default.
    #[schema(schema_with = schema::optional_role)]
    role: Option<Role>,
    /// Days until it expires (default `accounts.token_days`, at most `accounts.token_max_days`,
    /// 365 unless configured otherwise).
    #[serde(default, deserialize_with = "schema::optional_integer")]
    #[schema(minimum = 1, maximum = 365)]
    days: Option<i64>,
}

/// A created token: shown once, stored only as a hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    /// Id, to revoke it.
    id: i64,
    /// The bearer token.
    token: String,
    /// Its role.
    #[schema(value_type = String)]
    role: Role,
    /// When it stops working.
    expires_at: DateTime<Utc>,
}

/// Creates a personal token for the caller in the caller's workspace, with a role no higher
/// than the caller's.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let accounts = &state.settings.accounts;
    let role = body.role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(moonengage_accounts::Forbidden {
            needed: role,
            has: principal.role,
        }
        .into());
    }
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let created = tokens::create(
        &mut tx,
        tokens::Request {
            workspace_id: principal.workspace_id,
            user_id: principal.user_id,
            name: &body.name,
            role,
            days: body.days.unwrap_or(accounts.token_days),
            max_days: accounts.token_max_days,
        },
    )
    .await
    .map_err(|error| match error {
        CreateError::Internal(error) => ApiError::Internal(error),
        CreateError::NotAMember => ApiError::Unauthorized,
        CreateError::AboveOwnRole { has } => {
            moonengage_accounts::Forbidden { needed: role, has }.into()
        }
        invalid @ (CreateError::Lifetime { .. } | CreateError::Name) => ApiError::Unprocessable {
            code: "invalid_token",
            message: invalid.to_string(),
        },
    })?;
    activity::record(
        &mut *tx,
        principal.user_id,
        Some(principal.workspace_id),
        EventKind::TokenCreated,
        &Origin::default(),
    )
    .await?;
    alerts::alert(
        &mut *tx,
        AccountAlert::TokenCreated {
            user_id: principal.user_id,
            token_id: created.id,
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(token_id = created.id, "api token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: created.id,
            token: created.token.expose_secret().to_owned(),
            role,
            expires_at: created.expires_at,
        }),
    ))
}

/// A live token of yours (never the token itself).
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenItem {
    /// Id, to revoke it.
    id: i64,
    /// What it is for.
    name: String,
    /// Its role.
    #[schema(value_type = String)]
    role: Role,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it stops working.
    expires_at: DateTime<Utc>,
    /// When it was last used.
    last_used_at: Option<DateTime<Utc>>,
}

impl From<TokenView> for TokenItem {
    fn from(view: TokenView) -> TokenItem {
        TokenItem {
            id: view.id,
            name: view.name,
            role: view.role,
            created_at: view.created_at,
            expires_at: view.expires_at,
            last_used_at: view.last_used_at,
        }
    }
}

/// Lists your live tokens in this workspace.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenItem>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TokenItem>>, ApiError> {
    let tokens = tokens::list(&state.pool, principal.workspace_id, principal.user_id).await?;
    Ok(Json(tokens.into_iter().map(TokenItem::from).collect()))
}

/// Revokes a token; effective at once. Your own tokens, or (as an owner) any of the
/// workspace's.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let owner = tokens::revoke(&mut *tx, principal.workspace_id, id).await?;
    match owner {
        Some(owner) if owner == principal.user_id || principal.role == Role::Owner => {
            activity::record(
                &mut *tx,
                owner,
                Some(principal.workspace_id),
                EventKind::TokenRevoked,
                &Origin::default(),
            )
            .await?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            tracing::info!(token_id = id, "api token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::NotFound("token")),
    }
}

/// Logs out: revokes the token this request carries.
#[utoipa::path(post, path = "/api/v1/logout", tag = "tokens",
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    if let Via::Token(id) = principal.via {
        tokens::revoke(&state.pool, principal.workspace_id, id).await?;
        tracing::info!(token_id = id, "logged out");
    }
    Ok(StatusCode::NO_CONTENT)
}
