//! The workspace's members and invitations: every member sees who else is in; admins invite
//! (a role up to their own) and change or remove admins and viewers; only owners make, unmake
//! or remove owners, and the last owner stays. A member of another workspace answers 404.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use moonengage_accounts::members::{self, Member, MemberError};
use moonengage_accounts::{Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::state::AppState;

impl From<MemberError> for ApiError {
    fn from(error: MemberError) -> ApiError {
        match error {
            MemberError::Role(forbidden) => ApiError::Role(forbidden),
            MemberError::NotFound => ApiError::NotFound("member"),
            MemberError::Maintenance => {
                ApiError::Forbidden("maintenance access cannot change the workspace's members")
            }
            MemberError::LastOwner | MemberError::AlreadyMember => {
                ApiError::Conflict(error.to_string())
            }
            MemberError::Email(invalid) => ApiError::Unprocessable {
                code: "invalid_email",
                message: invalid.to_string(),
            },
            MemberError::Internal(error) => ApiError::Internal(error),
        }
    }
}

/// A member of the workspace.
#[derive(Serialize, ToSchema)]
pub(crate) struct MemberItem {
    /// Their user id.
    user_id: i64,
    /// Their login e-mail.
    email: String,
    /// Their role.
    #[schema(schema_with = schema::role)]
    role: Role,
    /// When they joined.
    joined_at: DateTime<Utc>,
}

impl From<Member> for MemberItem {
    fn from(m: Member) -> MemberItem {
        MemberItem {
            user_id: m.user_id,
            email: m.email,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

/// Lists the workspace's members, owners first.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses((status = 200, body = Vec<MemberItem>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<MemberItem>>, ApiError> {
    let members = members::list(&state.pool, principal.workspace_id).await?;
    Ok(Json(members.into_iter().map(MemberItem::from).collect()))
}

/// Someone to invite.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewInvitation {
    /// Their e-mail address: the link goes there.
    email: String,
    /// The role they get: at most yours.
    #[schema(schema_with = schema::role)]
    role: Role,
}

/// An invitation sent.
#[derive(Serialize, ToSchema)]
pub(crate) struct InvitationSent {
    /// The invitation's id.
    id: i64,
}

/// Invites someone by e-mail (a link that works once, for `accounts.invitation_hours`).
/// Needs Admin; the role may not be above yours.
#[utoipa::path(post, path = "/api/v1/invitations", tag = "members",
    request_body = NewInvitation,
    responses((status = 201, body = InvitationSent), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn invite(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<NewInvitation>,
) -> Result<(StatusCode, Json<InvitationSent>), ApiError> {
    let hours = state.settings.accounts.invitation_hours;
    let id = members::invite(&state.pool, &principal, &body.email, body.role, hours).await?;
    tracing::info!(invitation_id = id, "invitation queued");
    Ok((StatusCode::CREATED, Json(InvitationSent { id })))
}

/// A member's new role.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RoleChange {
    /// The role: owner changes need an owner.
    #[schema(schema_with = schema::role)]
    role: Role,
}

/// Changes a member's role. Needs Admin (Owner when the member is or becomes an owner); the
/// last owner cannot be demoted.
#[utoipa::path(put, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = i64, Path, description = "The member's user id")),
    request_body = RoleChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn change_role(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<StatusCode, ApiError> {
    members::change_role(&state.pool, &principal, user_id, body.role).await?;
    tracing::info!(user_id, "member's role changed");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member; their tokens stop working at once. Needs Admin (Owner to remove an
/// owner); the last owner cannot be removed.
#[utoipa::path(delete, path = "/api/v1/members/{user_id}", tag = "members",
    params(("user_id" = i64, Path, description = "The member's user id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(user_id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    members::remove(&state.pool, &principal, user_id).await?;
    tracing::info!(user_id, "member removed");
    Ok(StatusCode::NO_CONTENT)
}
