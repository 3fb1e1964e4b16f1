//! Privacy-policy versions: publishing one tells every person we hold data about, once, through
//! Messenger (see `moonengage_privacy::policy`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_privacy::policy::{self, NewVersion, PolicyError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// A version to publish.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PublishVersion {
    /// The label people see, e.g. `2026-12`; publishing the same label again does nothing.
    #[schema(min_length = 1, max_length = 300)]
    version: String,
    /// What changed, in a few sentences (at most 1,000 characters).
    #[schema(min_length = 1, max_length = 1000)]
    summary: String,
    /// Where the full policy is (https, no white space).
    #[schema(
        max_length = 300,
        pattern = r"^https://[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    url: String,
}

/// What publishing did.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublishedView {
    id: i64,
    version: String,
    published_at: DateTime<Utc>,
    /// False when the version existed already (nothing was done).
    created: bool,
    /// Notices queued now, for people inside their 24-hour window; everyone else is told with
    /// the reply to their next message.
    queued: i64,
}

/// A published version and how many people have been told of it so far.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub(crate) struct VersionView {
    id: i64,
    version: String,
    summary: String,
    url: String,
    published_at: DateTime<Utc>,
    /// People told of this version or a later one.
    told: i64,
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> ApiError {
        match error {
            PolicyError::Invalid { .. } => ApiError::Unprocessable {
                code: "invalid_policy_version",
                message: error.to_string(),
            },
            PolicyError::Database(error) => ApiError::Internal(error),
        }
    }
}

/// Publishes a policy version: people inside their window are told at once, the others with
/// the reply to their next message; each person once per version.
#[utoipa::path(post, path = "/api/v1/policy-versions", tag = "policy", request_body = PublishVersion,
    responses((status = 201, body = PublishedView), (status = 200, body = PublishedView),
              (status = 404, body = ErrorBody, description = "Not an operator"),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<PublishVersion>,
) -> Result<(StatusCode, Json<PublishedView>), ApiError> {
    principal.require_operator()?;
    principal.require(Role::Admin)?;
    let published = policy::publish(
        &state.pool,
        &NewVersion {
            version: &body.version,
            summary: &body.summary,
            url: &body.url,
        },
        state.settings.queue.max_attempts,
    )
    .await?;
    tracing::info!(
        policy_version_id = published.id,
        created = published.created,
        queued = published.queued,
        "policy version published"
    );
    let status = if published.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PublishedView {
            id: published.id,
            version: published.version,
            published_at: published.published_at,
            created: published.created,
            queued: published.queued,
        }),
    ))
}

/// Lists the published versions, newest first, with how many people were told of each.
#[utoipa::path(get, path = "/api/v1/policy-versions", tag = "policy",
    responses((status = 200, body = Vec<VersionView>),
              (status = 404, body = ErrorBody, description = "Not an operator")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    principal.require_operator()?;
    let versions = sqlx::query_as(
        "SELECT v.id, v.version, v.summary, v.url, v.published_at,
                (SELECT count(*) FROM subscribers s WHERE s.policy_version_notified >= v.id) AS told
         FROM policy_versions v ORDER BY v.id DESC",
    )
    .fetch_all(&state.pool)
    .await
    .map_err(|e| anyhow::Error::new(e).context("listing policy versions"))?;
    Ok(Json(versions))
}
