//! The Send API, `POST /v{N}/{me|PAGE_ID}/messages`: validates like Facebook, applies the rate
//! limit, the 24-hour window and the injected faults, and records what it accepts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::errors::GraphError;
use crate::faults::{PsidFault, chance};
use crate::graph::{GraphQuery, is_version, usage_headers};
use crate::records::{QuickReply, ReceivedMessage};
use crate::state::{Rejection, SandboxState, message_key};

const MAX_TEXT_CHARS: usize = 2000;
const MAX_QUICK_REPLIES: usize = 13;
const MAX_TITLE_CHARS: usize = 20;
const MAX_PAYLOAD_CHARS: usize = 1000;
/// Tags Facebook rejected with code 100 from 27 April 2026.
const RETIRED_TAGS: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "ACCOUNT_UPDATE",
    "POST_PURCHASE_UPDATE",
];

/// The Send API handler.
pub(crate) async fn send_message(
    State(app): State<App>,
    Path((version, node)): Path<(String, String)>,
    query: Result<Query<GraphQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    let state = &app.state;
    state.count_request();
    let token = query.ok().and_then(|Query(q)| q.access_token);
    let (hang, response) = match decide(state, &version, &node, token.as_deref(), &body) {
        Outcome::Answer(response) => (Duration::ZERO, response),
        Outcome::HangThenAnswer(hang, response) => (hang, response),
    };
    app.pause(hang).await;
    app.pause(state.latency()).await;
    response
}

enum Outcome {
    Answer(Response),
    /// The message was recorded; hold the answer back this long (timeout mode).
    HangThenAnswer(Duration, Response),
}

/// The message part of a Send request that passed validation.
struct ValidSend {
    psid: String,
    text: String,
    quick_replies: Vec<QuickReply>,
    messaging_type: String,
    tag: Option<String>,
}

/// Everything the handler does before waiting: checks in the order Facebook would apply them.
fn decide(
    state: &SandboxState,
    version: &str,
    node: &str,
    token: Option<&str>,
    body: &[u8],
) -> Outcome {
    if !is_version(version) {
        return Outcome::Answer(GraphError::unknown_path().into_response());
    }
    let Some(page) = token.and_then(|t| state.resolve_token(t)) else {
        return Outcome::Answer(GraphError::invalid_token().into_response());
    };
    let faults = state.faults();
    if chance(faults.http_503_rate) {
        state.reject(&page, Rejection::Http503);
        let body = "<html><body><h1>503 Service Unavailable</h1></body></html>";
        return Outcome::Answer((StatusCode::SERVICE_UNAVAILABLE, body).into_response());
    }
    let refuse = |error: GraphError, usage: HeaderMap| {
        state.reject(&page, Rejection::Code(error.code));
        Outcome::Answer(error.into_response_with(usage))
    };
    if let Some(spec) = faults.by_page.get(&*page) {
        let usage = usage_headers(&page, state.usage_percent(&page));
        return refuse(GraphError::from_spec(spec), usage);
    }
    let admission = state.admit(&page);
    let usage = usage_headers(&page, admission.usage_percent);
    if !admission.allowed {
        return Outcome::Answer(GraphError::rate_limited().into_response_with(usage));
    }
    if node != "me" && node != &*page {
        let error = GraphError::invalid_parameter(format!(
            "(#100) The access token is for Page {page}, not for {node}"
        ));
        return refuse(error, usage);
    }
    let send = match validate(body) {
        Ok(send) => send,
        Err(error) => return refuse(error, usage),
    };
    let key = message_key(&page, &send.psid, &send.text);
    match faults.by_psid.get(&send.psid) {
        Some(PsidFault::Error(spec)) => return refuse(GraphError::from_spec(spec), usage),
        Some(PsidFault::Timeout { hang }) => {
            let response = accept(state, &page, send, (key, admission.at), usage);
            return Outcome::HangThenAnswer(*hang, response);
        }
        None => {}
    }
    if state.is_window_closed(&send.psid) {
        return refuse(GraphError::outside_window(), usage);
    }
    let first_attempt = faults.tracks_first_attempts() && state.first_attempt(key);
    if let Some(spec) = faults.roll_random(first_attempt) {
        return refuse(GraphError::from_spec(spec), usage);
    }
    Outcome::Answer(accept(state, &page, send, (key, admission.at), usage))
}

#[derive(Serialize)]
struct SendSuccess<'a> {
    recipient_id: &'a str,
    message_id: &'a str,
}

/// Records the message and builds the success answer; `key` is the message key and the instant
/// its call was admitted.
fn accept(
    state: &SandboxState,
    page: &Arc<str>,
    send: ValidSend,
    (key, admitted_at): (u64, Instant),
    usage: HeaderMap,
) -> Response {
    let message_id = state.next_message_id();
    let response = (
        usage,
        Json(SendSuccess {
            recipient_id: &send.psid,
            message_id: &message_id,
        }),
    )
        .into_response();
    let message = ReceivedMessage {
        page_id: page.to_string(),
        psid: send.psid,
        text: send.text,
        quick_replies: send.quick_replies,
        messaging_type: send.messaging_type,
        tag: send.tag,
        message_id,
        received_at_ms: 0,
    };
    state.record(page, message, key, admitted_at);
    response
}

#[derive(Deserialize)]
struct SendBody {
    recipient: Option<Recipient>,
    messaging_type: Option<String>,
    tag: Option<String>,
    message: Option<MessageBody>,
}

#[derive(Deserialize)]
struct Recipient {
    id: Option<String>,
}

#[derive(Deserialize)]
struct MessageBody {
    text: Option<String>,
    quick_replies: Option<Vec<QuickReplyBody>>,
}

#[derive(Deserialize)]
struct QuickReplyBody {
    content_type: Option<String>,
    title: Option<String>,
    payload: Option<String>,
}

/// Parses and checks a Send body against the Messenger Platform's limits.
fn validate(body: &[u8]) -> Result<ValidSend, GraphError> {
    let body: SendBody = serde_json::from_slice(body).map_err(|e| {
        GraphError::invalid_parameter(format!("(#100) Invalid JSON for the request body: {e}"))
    })?;
    let psid = body
        .recipient
        .and_then(|r| r.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            GraphError::invalid_parameter("(#100) The parameter recipient is required")
        })?;
    let messaging_type = body.messaging_type.unwrap_or_default();
    match messaging_type.as_str() {
        "RESPONSE" | "UPDATE" => {}
        "MESSAGE_TAG" => match body.tag.as_deref() {
            None | Some("") => {
                return Err(GraphError::invalid_parameter(
                    "(#100) Param tag is required for messaging_type MESSAGE_TAG",
                ));
            }
            Some(tag) if RETIRED_TAGS.contains(&tag) => {
                return Err(GraphError::invalid_parameter(format!(
                    "(#100) The tag {tag} is no longer supported"
                )));
            }
            Some(_) => {}
        },
        _ => {
            return Err(GraphError::invalid_parameter(
                "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}",
            ));
        }
    }
    let message = body
        .message
        .ok_or_else(|| GraphError::invalid_parameter("(#100) The parameter message is required"))?;
    let text = message.text.filter(|t| !t.is_empty()).ok_or_else(|| {
        GraphError::invalid_parameter("(#100) Param message[text] must be a non-empty string")
    })?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(GraphError::invalid_parameter(
            "(#100) Length of param message[text] must be less than or equal to 2000",
        ));
    }
    let quick_replies = validate_quick_replies(message.quick_replies.unwrap_or_default())?;
    Ok(ValidSend {
        psid,
        text,
        quick_replies,
        messaging_type,
        tag: body.tag,
    })
}

fn validate_quick_replies(replies: Vec<QuickReplyBody>) -> Result<Vec<QuickReply>, GraphError> {
    if replies.len() > MAX_QUICK_REPLIES {
        return Err(GraphError::invalid_parameter(
            "(#100) param message[quick_replies] must have at most 13 elements",
        ));
    }
    replies
        .into_iter()
        .map(|reply| {
            if reply.content_type.as_deref() != Some("text") {
                return Err(GraphError::invalid_parameter(
                    "(#100) param message[quick_replies][content_type] must be text",
                ));
            }
            let title = reply.title.filter(|t| !t.is_empty()).ok_or_else(|| {
                GraphError::invalid_parameter("(#100) param title must be non-empty")
            })?;
            if title.chars().count() > MAX_TITLE_CHARS {
                return Err(GraphError::invalid_parameter(
                    "(#100) param message[quick_replies][title] must be at most 20 characters",
                ));
            }
            let payload = reply.payload.filter(|p| !p.is_empty()).ok_or_else(|| {
                GraphError::invalid_parameter("(#100) param payload must be non-empty")
            })?;
            if payload.chars().count() > MAX_PAYLOAD_CHARS {
                return Err(GraphError::invalid_parameter(
                    "(#100) param message[quick_replies][payload] must be at most 1000 characters",
                ));
            }
            Ok(QuickReply { title, payload })
        })
        .collect()
}
