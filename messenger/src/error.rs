//! What a Graph API call can fail with, and its class. Classifying on code and subcode (not the
//! HTTP status) is what lets a worker choose between retrying, skipping, marking a person
//! unreachable and halting a Page.

use std::time::Duration;

use serde::Deserialize;

/// The error object of a Graph API answer.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphError {
    /// Human-readable text from Facebook (may name the recipient; never logged).
    #[serde(default)]
    pub message: String,
    /// Main error code.
    pub code: i64,
    /// Refinement of the code.
    #[serde(default)]
    pub error_subcode: Option<i64>,
    /// Facebook's own hint that retrying may work.
    #[serde(default)]
    pub is_transient: Option<bool>,
}

/// Why a Graph API call (a send, a profile look-up) did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Facebook answered with an error object.
    #[error("Graph API error {} (subcode {:?}, HTTP {status})", .error.code, .error.error_subcode)]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The error object.
        error: GraphError,
        /// Minutes until access returns, from `X-Business-Use-Case-Usage`, when rate limited.
        regain_access_minutes: Option<u64>,
    },
    /// An HTTP error without a Graph error body (proxy errors, 5xx pages).
    #[error("HTTP {status} without a Graph error body")]
    Http {
        /// HTTP status of the answer.
        status: u16,
    },
    /// The connection failed before the request was written: nothing reached Facebook.
    #[error("connection failed before the request was sent")]
    Connect,
    /// The request may have reached Facebook but no answer came: resending could duplicate.
    #[error("no answer after the request was sent")]
    Ambiguous,
}

/// What a worker does with a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later with backoff.
    Transient,
    /// The Page is over a rate limit: pause it, retry without spending an attempt.
    RateLimited,
    /// This person cannot be reached from this Page: mark them unreachable.
    RecipientPermanent,
    /// The person's 24-hour window has closed: skip.
    WindowClosed,
    /// The Page cannot send at all (token, permission, block): halt it, tell admins.
    PageFatal,
    /// May or may not have been delivered: record as unknown, never resend.
    Ambiguous,
    /// Any other rejection of this message: fail it without retrying.
    Permanent,
}

impl ErrorClass {
    /// Stable name for records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::RecipientPermanent => "recipient_unreachable",
            ErrorClass::WindowClosed => "window_closed",
            ErrorClass::PageFatal => "page_fatal",
            ErrorClass::Ambiguous => "unknown",
            ErrorClass::Permanent => "rejected",
        }
    }
}

impl SendError {
    /// How long a rate-limited Page must pause: Facebook's estimate, else `default`.
    pub fn pause(&self, default: Duration) -> Duration {
        match self {
            SendError::Api {
                regain_access_minutes: Some(minutes),
                ..
            } if *minutes > 0 => Duration::from_secs(minutes * 60),
            _ => default,
        }
    }

    /// Classifies by code and subcode as ../shared/reference/messenger-platform.md lists them.
    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Connect => ErrorClass::Transient,
            SendError::Ambiguous => ErrorClass::Ambiguous,
            SendError::Http { status } if *status == 429 || *status >= 500 => ErrorClass::Transient,
            SendError::Http { .. } => ErrorClass::Permanent,
            SendError::Api { status, error, .. } => classify(*status, error),
        }
    }
}

fn classify(status: u16, error: &GraphError) -> ErrorClass {
    let subcode = error.error_subcode.unwrap_or(0);
    match (error.code, subcode) {
        (4 | 17 | 32 | 613 | 80006, _) => ErrorClass::RateLimited,
        (1200 | 1 | 2, _) => ErrorClass::Transient,
        (551, _) if error.is_transient == Some(true) => ErrorClass::Transient,
        (551, _) | (100, 2018001) | (10, 2018108) | (200, 1545041) => {
            ErrorClass::RecipientPermanent
        }
        (10, 2018278) => ErrorClass::WindowClosed,
        (190, _) | (10, 2018065) | (200, 2018028) | (230, _) | (368, _) | (10, 1893063) => {
            ErrorClass::PageFatal
        }
        _ if error.is_transient == Some(true) || status == 429 || status >= 500 => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests;
