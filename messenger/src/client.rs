//! The Graph API client: the Send API call, the User Profile API call, and the classification
//! of their answers. Classifying on code and subcode (not the HTTP status) is what lets a worker choose between retrying,
//! skipping, marking a person unreachable and halting a Page.

use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::settings::MessengerSettings;

/// A quick reply button under a message; the unsubscribe option is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// Button label (at most 20 characters).
    pub title: String,
    /// What comes back in the webhook when the person taps it.
    pub payload: String,
}

/// What to send to one person.
#[derive(Debug, Clone)]
pub struct OutgoingMessage<'a> {
    /// The recipient's page-scoped id.
    pub psid: &'a str,
    /// The rendered text.
    pub text: &'a str,
    /// Buttons, the unsubscribe option among them.
    pub quick_replies: &'a [QuickReply],
}

/// A message Facebook accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct Sent {
    /// Facebook's id of the message.
    pub message_id: String,
    /// Highest share (percent) of the Page's rate budget used, from `X-Business-Use-Case-Usage`.
    #[serde(skip)]
    pub usage_percent: Option<u64>,
}

/// A person's profile as the User Profile API answers `fields=first_name`.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    /// Their first name; Facebook may leave it out (privacy settings), and then templates
    /// use their fallback.
    #[serde(default)]
    pub first_name: Option<String>,
}

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

/// A Graph API client shared by every job of a worker (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_url: reqwest::Url,
    messages_url: String,
    /// The app access token (`{app-id}|{app-secret}`) and its `appsecret_proof`.
    app_token: SecretString,
    app_proof: String,
}

/// One of the Page-scoped ids the ID Matching API answers for an app-scoped user id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageScopedId {
    /// The person's PSID on the Page.
    #[serde(rename = "id")]
    pub psid: String,
    /// The Page.
    pub page: PageRef,
}

/// A Page as the Graph API names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageRef {
    /// Facebook's id of the Page.
    pub id: String,
}

#[derive(Deserialize)]
struct IdsForPages {
    data: Vec<PageScopedId>,
}

#[derive(Serialize)]
struct SendBody<'a> {
    recipient: Recipient<'a>,
    messaging_type: &'static str,
    message: MessageBody<'a>,
}

#[derive(Serialize)]
struct Recipient<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct MessageBody<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    quick_replies: Vec<QuickReplyBody<'a>>,
}

#[derive(Serialize)]
struct QuickReplyBody<'a> {
    content_type: &'static str,
    title: &'a str,
    payload: &'a str,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

impl Client {
    /// Builds the client; outside dev and test only `https://` endpoints are allowed.
    pub fn new(settings: &MessengerSettings, https_only: bool) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(settings.request_timeout())
            .https_only(https_only)
            .pool_max_idle_per_host(1024)
            .build()?;
        let base = settings.base_url.trim_end_matches('/');
        let api_url = format!("{base}/{}", settings.api_version);
        let app_token = format!(
            "{}|{}",
            settings.app_id,
            settings.app_secret.expose_secret()
        );
        let mut proof =
            Hmac::<Sha256>::new_from_slice(settings.app_secret.expose_secret().as_bytes())
                .context("keying the appsecret_proof")?;
        proof.update(app_token.as_bytes());
        Ok(Client {
            http,
            messages_url: format!("{api_url}/me/messages"),
            api_url: reqwest::Url::parse(&api_url)
                .map_err(|e| anyhow::anyhow!("messenger.base_url is not a URL: {e}"))?,
            app_token: SecretString::from(app_token),
            app_proof: hex::encode(proof.finalize().into_bytes()),
        })
    }

    /// The Page-scoped ids of the person Facebook's data-deletion callback names by an
    /// app-scoped id (ID Matching API, with the app's token): empty when no Page of the
    /// business knows them.
    pub async fn ids_for_pages(&self, app_scoped_id: &str) -> anyhow::Result<Vec<PageScopedId>> {
        if app_scoped_id.is_empty() || !app_scoped_id.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("an app-scoped id is digits only");
        }
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("messenger.base_url cannot take a path"))?
            .push(app_scoped_id)
            .push("ids_for_pages");
        let response = self
            .http
            .get(url)
            .query(&[
                ("access_token", self.app_token.expose_secret()),
                ("appsecret_proof", self.app_proof.as_str()),
            ])
            .send()
            .await
            .context("calling the ID Matching API")?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("the ID Matching API answered HTTP {status}");
        }
        let ids: IdsForPages = response
            .json()
            .await
            .context("reading the ID Matching API's answer")?;
        Ok(ids.data)
    }

    /// Sends a text with quick replies as a `RESPONSE` inside the person's 24-hour window.
    pub async fn send(
        &self,
        page_token: &SecretString,
        message: &OutgoingMessage<'_>,
    ) -> Result<Sent, SendError> {
        let body = SendBody {
            recipient: Recipient { id: message.psid },
            messaging_type: "RESPONSE",
            message: MessageBody {
                text: message.text,
                quick_replies: message
                    .quick_replies
                    .iter()
                    .map(|q| QuickReplyBody {
                        content_type: "text",
                        title: &q.title,
                        payload: &q.payload,
                    })
                    .collect(),
            },
        };
        let response = self
            .http
            .post(&self.messages_url)
            .query(&[("access_token", page_token.expose_secret())])
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let (mut sent, usage) = read::<Sent>(response).await?;
        sent.usage_percent =
            usage_field_max(&usage, &["call_count", "total_cputime", "total_time"]);
        Ok(sent)
    }

    /// Looks up a person's first name (User Profile API). A read: unlike a send, an answer
    /// that never came ([`SendError::Ambiguous`]) is safe to ask again.
    pub async fn profile(
        &self,
        page_token: &SecretString,
        psid: &str,
    ) -> Result<Profile, SendError> {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|()| SendError::Connect)?
            .push(psid);
        let response = self
            .http
            .get(url)
            .query(&[
                ("fields", "first_name"),
                ("access_token", page_token.expose_secret()),
            ])
            .send()
            .await
            .map_err(transport_error)?;
        Ok(read::<Profile>(response).await?.0)
    }
}

/// Reads a call's answer: the body of a success (an unreadable one leaves the outcome
/// unknown) with the usage header, or the error of a refusal — Facebook's error object when
/// the body is one.
async fn read<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<(T, Option<serde_json::Value>), SendError> {
    let status = response.status();
    let usage = business_usage(response.headers());
    let bytes = response.bytes().await.map_err(|_| SendError::Ambiguous)?;
    if status.is_success() {
        let answer = serde_json::from_slice(&bytes).map_err(|_| SendError::Ambiguous)?;
        return Ok((answer, usage));
    }
    Err(match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(envelope) => SendError::Api {
            status: status.as_u16(),
            error: envelope.error,
            regain_access_minutes: usage_field_max(&usage, &["estimated_time_to_regain_access"]),
        },
        Err(_) => SendError::Http {
            status: status.as_u16(),
        },
    })
}

/// A connect error happened before anything was written; any other transport error (timeout,
/// reset mid-request) leaves the outcome unknown.
fn transport_error(error: reqwest::Error) -> SendError {
    if error.is_connect() {
        SendError::Connect
    } else {
        SendError::Ambiguous
    }
}

/// Parses `X-Business-Use-Case-Usage`: per Page, a list of usage entries.
fn business_usage(headers: &reqwest::header::HeaderMap) -> Option<serde_json::Value> {
    let value = headers.get("x-business-use-case-usage")?.to_str().ok()?;
    serde_json::from_str(value).ok()
}

/// The largest of the named numeric fields over every entry of the usage header.
fn usage_field_max(usage: &Option<serde_json::Value>, fields: &[&str]) -> Option<u64> {
    usage
        .as_ref()?
        .as_object()?
        .values()
        .filter_map(|entries| entries.as_array())
        .flatten()
        .flat_map(|entry| {
            fields
                .iter()
                .filter_map(|field| entry.get(*field)?.as_u64())
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: i64, subcode: Option<i64>, transient: Option<bool>) -> SendError {
        SendError::Api {
            status,
            error: GraphError {
                message: String::new(),
                code,
                error_subcode: subcode,
                is_transient: transient,
            },
            regain_access_minutes: None,
        }
    }

    #[test]
    fn classifies_the_documented_codes() {
        use ErrorClass::*;
        let table = [
            (api(500, 1200, None, Some(true)), Transient),
            (api(500, 1, None, None), Transient),
            (api(500, 2, None, Some(true)), Transient),
            (api(400, 4, None, None), RateLimited),
            (api(400, 17, None, None), RateLimited),
            (api(400, 32, None, None), RateLimited),
            (api(400, 613, None, None), RateLimited),
            (api(400, 80006, None, None), RateLimited),
            (api(400, 551, None, Some(false)), RecipientPermanent),
            (api(400, 551, None, Some(true)), Transient),
            (api(400, 100, Some(2018001), None), RecipientPermanent),
            (api(400, 10, Some(2018108), None), RecipientPermanent),
            (api(400, 200, Some(1545041), None), RecipientPermanent),
            (api(400, 10, Some(2018278), None), WindowClosed),
            (api(400, 190, Some(460), None), PageFatal),
            (api(400, 10, Some(2018065), None), PageFatal),
            (api(400, 200, Some(2018028), None), PageFatal),
            (api(400, 230, None, None), PageFatal),
            (api(400, 368, None, None), PageFatal),
            (api(400, 10, Some(1893063), None), PageFatal),
            (api(400, 100, None, None), Permanent),
            (SendError::Http { status: 503 }, Transient),
            (SendError::Http { status: 429 }, Transient),
            (SendError::Http { status: 404 }, Permanent),
            (SendError::Connect, Transient),
            (SendError::Ambiguous, Ambiguous),
        ];
        for (error, expected) in table {
            assert_eq!(error.class(), expected, "{error}");
        }
    }

    #[test]
    fn reads_the_usage_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-business-use-case-usage",
            r#"{"123":[{"type":"messenger","call_count":85,"total_time":12,"estimated_time_to_regain_access":7}]}"#
                .parse()
                .unwrap(),
        );
        let usage = business_usage(&headers);
        assert_eq!(
            usage_field_max(&usage, &["estimated_time_to_regain_access"]),
            Some(7)
        );
        assert_eq!(
            usage_field_max(&usage, &["call_count", "total_cputime", "total_time"]),
            Some(85)
        );
        assert_eq!(
            usage_field_max(&business_usage(&Default::default()), &["call_count"]),
            None
        );
    }
}
