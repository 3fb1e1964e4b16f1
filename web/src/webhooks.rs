//! `/webhooks/messenger`: Facebook's verification handshake, and event delivery. A delivery is
//! checked (size, signature over the raw bytes, JSON), its events are classified in memory and
//! stored in one statement, and it is answered at once: a stored event is queued work.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use moonengage_core::webhook;
use moonengage_messenger::webhook::{parse, verify_signature};
use moonengage_ops::metrics;
use secrecy::ExposeSecret;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The header Facebook signs each delivery with.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Answers the subscription handshake: the challenge is echoed only for our verify token.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<String, ApiError> {
    let expected = state
        .settings
        .messenger
        .verify_token
        .expose_secret()
        .as_bytes();
    let given = params
        .get("hub.verify_token")
        .map_or(&b""[..], |t| t.as_bytes());
    let token_ok = !expected.is_empty() && bool::from(expected.ct_eq(given));
    match (
        params.get("hub.mode").map(String::as_str),
        params.get("hub.challenge"),
    ) {
        (Some("subscribe"), Some(challenge)) if token_ok => Ok(challenge.clone()),
        _ => Err(ApiError::Forbidden("verification refused")),
    }
}

/// Times each delivery from its arrival to its answer, the body read and the storing included:
/// the ack latency Facebook sees (it gives up at 5 s and resends the whole delivery).
pub(crate) async fn timed(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::webhook_acked(response.status().as_u16(), started.elapsed());
    response
}

/// How many events of a delivery were stored, how many were known already, and how many were
/// skipped as malformed.
#[derive(Debug, Serialize)]
pub(crate) struct Received {
    stored: usize,
    duplicates: usize,
    malformed: usize,
}

/// Receives a delivery. Nothing is stored unless the size and the signature are right and the
/// body is JSON; then every well-formed event is stored (once) and the delivery accepted, even
/// when some event in it is malformed (that one is skipped and counted).
pub(crate) async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Received>), ApiError> {
    let limit = state.settings.web.max_body_bytes;
    let body = body.map_err(|rejection| ApiError::from_body(rejection, limit))?;
    let rejected = |error: ApiError| {
        metrics::webhook_received("other", "rejected");
        error
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .map(|value| value.to_str().unwrap_or_default());
    verify_signature(
        state
            .settings
            .messenger
            .app_secret
            .expose_secret()
            .as_bytes(),
        &body,
        signature,
    )
    .map_err(|error| {
        tracing::info!(%error, "webhook refused");
        rejected(ApiError::BadSignature)
    })?;
    let parsed = parse(&body, &state.settings.keywords, &state.signer)
        .map_err(|error| rejected(ApiError::BadRequest(error.to_string())))?;
    let outcome = webhook::store(
        &state.pool,
        &state.webhook_writer,
        &state.nudges,
        &state.keyring,
        &parsed.events,
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(Received {
            stored: outcome.stored,
            duplicates: outcome.duplicates,
            malformed: parsed.malformed.len(),
        }),
    ))
}
