//! Facebook's Data Deletion Request Callback: `POST /facebook/data-deletion` with a
//! `signed_request`, answered with a status page URL and a confirmation code; and that status
//! page, `GET /deletion-status?code=…`, for people (plain HTML, no cookies).
//!
//! Facebook names the person by an app-scoped id, while everything we hold is keyed by
//! Page-scoped ids: the request is recorded (the id sealed until it completes) and answered at
//! once; its job maps the id through the ID Matching API and files an erasure for each Page of
//! ours the person talks to.

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use moonengage_messenger::signed_request::{self, SignedRequestError};
use moonengage_privacy::dsr::{self, Channel, DsrStatus, DsrType, Status};
use moonengage_privacy::requests;
use moonengage_privacy::subject::SealedSubject;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use crate::unsubscribe::page;

/// Longest confirmation code looked up; ours are 16 characters.
const MAX_CODE_LEN: usize = 64;

/// What Facebook posts.
#[derive(Deserialize)]
pub(crate) struct DeletionForm {
    signed_request: String,
}

/// What Facebook expects back.
#[derive(Serialize)]
pub(crate) struct DeletionAnswer {
    url: String,
    confirmation_code: String,
}

/// Verifies the `signed_request`, files an erasure request and answers with its status page.
/// Anything not signed by our app, not HMAC-SHA256 or expired is refused with nothing stored.
pub(crate) async fn data_deletion(
    State(state): State<AppState>,
    form: Result<Form<DeletionForm>, FormRejection>,
) -> Result<Json<DeletionAnswer>, ApiError> {
    let Ok(Form(form)) = form else {
        return Err(ApiError::BadRequest(
            "expected a form with a signed_request field".into(),
        ));
    };
    let secret = state
        .settings
        .messenger
        .app_secret
        .expose_secret()
        .as_bytes();
    let request = signed_request::verify(&form.signed_request, secret, Utc::now())
        .inspect_err(|error| tracing::info!(%error, "data-deletion callback refused"))
        .map_err(refusal)?;
    let sealed = SealedSubject::AppScoped {
        app_scoped_id: request.user_id,
    }
    .seal(&state.keyring)?;
    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| anyhow::Error::new(e).context("filing a deletion request"))?;
    let filed = dsr::file_sealed(
        &mut conn,
        DsrType::Erasure,
        Channel::FacebookCallback,
        sealed,
        state.settings.queue.max_attempts,
    )
    .await?;
    tracing::debug!(request_id = filed.id, "deletion request filed by Facebook");
    Ok(Json(DeletionAnswer {
        url: format!(
            "{}/deletion-status?code={}",
            state.settings.public_base_url(),
            filed.confirmation_code
        ),
        confirmation_code: filed.confirmation_code,
    }))
}

fn refusal(error: SignedRequestError) -> ApiError {
    match error {
        SignedRequestError::Malformed => ApiError::BadRequest(error.to_string()),
        SignedRequestError::BadSignature => ApiError::BadSignature,
        SignedRequestError::UnsupportedAlgorithm => ApiError::Unprocessable {
            code: "unsupported_algorithm",
            message: error.to_string(),
        },
        SignedRequestError::Expired => ApiError::Unprocessable {
            code: "expired",
            message: error.to_string(),
        },
    }
}

/// The query of the status page.
#[derive(Deserialize)]
pub(crate) struct StatusQuery {
    code: Option<String>,
}

/// Shows where a request stands, in words.
pub(crate) async fn status(
    State(state): State<AppState>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let code = query.ok().and_then(|Query(q)| q.code).filter(|code| {
        !code.is_empty()
            && code.len() <= MAX_CODE_LEN
            && code.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    let Some(code) = code else {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "No confirmation code",
            "<p>Open this page with the link you were given, which carries your confirmation \
             code.</p>",
        ));
    };
    let Some(request) = requests::by_code(&state.pool, &code).await? else {
        return Ok(page(
            StatusCode::NOT_FOUND,
            "Unknown confirmation code",
            "<p>We have no request with this confirmation code. Check the link you were \
             given.</p>",
        ));
    };
    Ok(page(
        StatusCode::OK,
        "Your data request",
        &describe(&request),
    ))
}

/// The status of a request, for the person who made it.
fn describe(request: &Status) -> String {
    let what = match request.kind {
        DsrType::Export => "a copy of your data",
        DsrType::Objection => "that your data is no longer used for messages",
        DsrType::Erasure => "the deletion of your data",
    };
    let mut html = format!(
        "<p>Confirmation code <strong>{}</strong>: you asked for {what} on {}.</p>",
        request.confirmation_code,
        day(request.received_at)
    );
    html.push_str(&match (request.status, request.completed_at) {
        (DsrStatus::Completed, Some(at)) => {
            format!("<p>Status: <strong>completed</strong> on {}.</p>", day(at))
        }
        (DsrStatus::Refused, _) => format!(
            "<p>Status: <strong>refused</strong>. Reason: {}.</p>",
            escape(request.outcome.as_deref().unwrap_or("not given"))
        ),
        _ => format!(
            "<p>Status: <strong>received</strong>. It will be completed by {} at the latest.</p>",
            day(request.due_at)
        ),
    });
    if request.channel == Channel::FacebookCallback {
        html.push_str(
            "<p>Facebook tells us which conversations with our Pages your app-scoped id belongs \
             to; everything we hold about you in each of them is erased.</p>",
        );
    }
    html
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

/// Escapes text for HTML (outcomes are ours, but a page never trusts stored text).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
