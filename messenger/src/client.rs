//! The Graph API client: the Send API call and the User Profile API call, with their answers
//! read into results or classified errors (`crate::error`).

use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{GraphError, SendError};
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
mod tests;
