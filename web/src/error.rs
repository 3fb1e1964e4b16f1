//! The one error type of every JSON answer: `{"error":{"code","message"}}`. Internal failures
//! are logged with their context and answered with a generic message, never their text.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use moonengage_core::campaigns::CampaignError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

/// Why a request failed, as the caller may be told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token, or one that is unknown or revoked.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A webhook whose signature is missing or does not match its body.
    #[error("the request signature is missing or invalid")]
    BadSignature,
    /// Refused for another reason (e.g. a wrong webhook verify token).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The caller's role in the workspace is below what the act needs.
    #[error(transparent)]
    Role(#[from] moonengage_accounts::Forbidden),
    /// No such resource.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The resource is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The body was understood but its content is invalid; `code` names the problem.
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable reason, e.g. `invalid_template`.
        code: &'static str,
        /// What to fix.
        message: String,
    },
    /// The body exceeds the configured limit.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The request took longer than `web.request_timeout_secs`.
    #[error("the request timed out")]
    Timeout,
    /// Anything else: logged, answered generically.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human-readable message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `unauthorized`, `invalid_template`.
    pub code: &'static str,
    /// What went wrong, without internals.
    pub message: String,
}

impl ApiError {
    /// The error for a body axum could not read: too large for `limit` bytes, or unreadable.
    pub fn from_body(rejection: BytesRejection, limit: usize) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadSignature => (StatusCode::FORBIDDEN, "invalid_signature"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Role(_) => (StatusCode::FORBIDDEN, "insufficient_role"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = %format!("{error:#}"), "request failed");
        }
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        response
    }
}

impl From<moonengage_accounts::NotOperator> for ApiError {
    /// A platform route asked for by someone who is not an operator: as if it did not exist.
    fn from(_: moonengage_accounts::NotOperator) -> ApiError {
        ApiError::NotFound("route")
    }
}

impl From<CampaignError> for ApiError {
    fn from(error: CampaignError) -> ApiError {
        match error {
            CampaignError::Template(error) => ApiError::Unprocessable {
                code: "invalid_template",
                message: error.to_string(),
            },
            CampaignError::NotFound(what) => ApiError::NotFound(what),
            CampaignError::WrongState(_) | CampaignError::PageHalted { .. } => {
                ApiError::Conflict(error.to_string())
            }
            CampaignError::Database(error) => {
                ApiError::Internal(anyhow::Error::new(error).context("campaign query"))
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable {
                code: "invalid_body",
                message: rejection.body_text(),
            },
            _ => ApiError::BadRequest(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// `axum::Json` whose rejection is an [`ApiError`], so a bad body gets the JSON error shape. Text
/// holding U+0000 is refused (422) before anything reads it: Postgres text cannot store it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        let Json(value) = Json::<Value>::from_request(request, state).await?;
        let invalid = |message: String| ApiError::Unprocessable {
            code: "invalid_body",
            message,
        };
        if holds_nul(&value) {
            return Err(invalid("text must not contain U+0000 (NUL)".into()));
        }
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|error| invalid(format!("the body does not match its schema: {error}")))
    }
}

/// Whether any text of a JSON value (a key or a string) holds U+0000.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Answers unknown routes in the error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// Answers a known route called with the wrong method in the error shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
