//! Graph API error answers, in the exact shape Facebook sends them, so the backend's error
//! classification is exercised against realistic payloads.

use std::borrow::Cow;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::distributions::{Alphanumeric, DistString};
use serde::Serialize;

use crate::faults::ErrorSpec;

/// One Graph API error: what the handler decided to refuse, before it is rendered.
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    pub(crate) code: u32,
    subcode: Option<u32>,
    message: Cow<'static, str>,
    is_transient: bool,
    status: StatusCode,
}

impl GraphError {
    /// An error with the message, transience and HTTP status Facebook uses for `code`.
    pub(crate) fn new(code: u32, subcode: Option<u32>) -> Self {
        let (message, is_transient, status) = defaults(code);
        Self {
            code,
            subcode,
            message,
            is_transient,
            status,
        }
    }

    /// Missing or unknown access token.
    pub(crate) fn invalid_token() -> Self {
        Self::new(190, None)
    }

    /// A request the Graph API refuses as malformed, with a message naming the problem.
    pub(crate) fn invalid_parameter(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..Self::new(100, None)
        }
    }

    /// The path does not name a Graph API version (`v21.0`).
    pub(crate) fn unknown_path() -> Self {
        Self {
            message: Cow::Borrowed("Unknown path components"),
            ..Self::new(2500, None)
        }
    }

    /// More Send calls to the Page in the last second than the rate limit allows.
    pub(crate) fn rate_limited() -> Self {
        Self::new(613, None)
    }

    /// The person is outside their 24-hour standard messaging window.
    pub(crate) fn outside_window() -> Self {
        Self::new(10, Some(2_018_278))
    }

    /// An error configured through failure injection; unset fields take Facebook's defaults.
    pub(crate) fn from_spec(spec: &ErrorSpec) -> Self {
        let mut error = Self::new(spec.code, spec.subcode);
        if let Some(message) = &spec.message {
            error.message = Cow::Owned(message.clone());
        }
        if let Some(is_transient) = spec.is_transient {
            error.is_transient = is_transient;
        }
        if let Some(status) = spec.http_status.and_then(|s| StatusCode::from_u16(s).ok()) {
            error.status = status;
        }
        error
    }

    /// Renders the error with extra headers (the usage header for Send answers).
    pub(crate) fn into_response_with(self, headers: HeaderMap) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                message: &self.message,
                r#type: "OAuthException",
                code: self.code,
                error_subcode: self.subcode,
                fbtrace_id: fbtrace_id(),
                is_transient: self.is_transient,
            },
        };
        (self.status, headers, axum::Json(body)).into_response()
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        self.into_response_with(HeaderMap::new())
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    r#type: &'static str,
    code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_subcode: Option<u32>,
    fbtrace_id: String,
    is_transient: bool,
}

/// A random trace id, like the one Facebook attaches for support requests.
fn fbtrace_id() -> String {
    let mut id = String::with_capacity(11);
    id.push('A');
    Alphanumeric.append_string(&mut rand::thread_rng(), &mut id, 10);
    id
}

/// Facebook's message, `is_transient` and HTTP status for an error code.
fn defaults(code: u32) -> (Cow<'static, str>, bool, StatusCode) {
    let bad = StatusCode::BAD_REQUEST;
    let (message, transient, status) = match code {
        1 => (
            "An unknown error occurred",
            true,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        2 => (
            "An unexpected error has occurred. Please retry your request later.",
            true,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        4 => ("(#4) Application request limit reached", true, bad),
        10 => (
            "(#10) This message is sent outside of allowed window.",
            false,
            bad,
        ),
        17 => ("(#17) User request limit reached", true, bad),
        32 => ("(#32) Page request limit reached", true, bad),
        100 => ("(#100) Invalid parameter", false, bad),
        190 => (
            "Invalid OAuth access token - Cannot parse access token",
            false,
            bad,
        ),
        200 => ("(#200) Permissions error", false, bad),
        230 => (
            "(#230) Requires pages_messaging permission to manage the object",
            false,
            bad,
        ),
        368 => (
            "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
            false,
            bad,
        ),
        551 => ("(#551) This person isn't available right now.", false, bad),
        613 => (
            "(#613) Calls to this api have exceeded the rate limit.",
            true,
            bad,
        ),
        1200 => (
            "(#1200) Temporary send message failure. Please try again later",
            true,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        80006 => (
            "(#80006) There have been too many messages sent to this Messenger thread in a short period of time",
            true,
            bad,
        ),
        _ => {
            return (
                Cow::Owned(format!("(#{code}) Sandbox injected error")),
                false,
                bad,
            );
        }
    };
    (Cow::Borrowed(message), transient, status)
}
