//! The shape of a Messenger webhook body, parsed and classified in memory. Texts and payloads
//! are read here and go no further: an [`InboundEvent`] carries only what is stored.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::intent::{Intent, KeywordSettings};
use crate::unsubscribe::{self, UnsubscribeSigner};

/// Why a webhook body was refused; the message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("body is not a valid webhook payload: {0}")]
    Json(String),
    /// A subscription to something other than Pages.
    #[error("unsupported object `{0}`, expected `page`")]
    NotPage(String),
    /// A message or postback without a field it needs.
    #[error("{0} is missing")]
    Missing(String),
}

#[derive(Deserialize)]
struct Body {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    messaging: Vec<Messaging>,
}

#[derive(Deserialize)]
struct Messaging {
    sender: Option<Party>,
    timestamp: Option<i64>,
    message: Option<Message>,
    postback: Option<Postback>,
}

#[derive(Deserialize)]
struct Party {
    id: String,
}

#[derive(Deserialize)]
struct Message {
    mid: Option<String>,
    text: Option<String>,
    quick_reply: Option<QuickReply>,
    #[serde(default)]
    is_echo: bool,
}

#[derive(Deserialize)]
struct QuickReply {
    payload: String,
}

#[derive(Deserialize)]
struct Postback {
    mid: Option<String>,
    payload: Option<String>,
}

/// Which kind of messaging event this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The person wrote (or tapped a quick reply).
    Message,
    /// The person tapped a button.
    Postback,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Postback => "postback",
        }
    }
}

/// One event a person caused, reduced to what is kept. `Debug` omits the PSID.
#[derive(Clone)]
pub struct InboundEvent {
    /// Facebook's id of the Page the event was sent to.
    pub page_fb_id: String,
    /// The sender's page-scoped id; sealed before it is stored.
    pub psid: String,
    /// Message or postback.
    pub kind: EventKind,
    /// What it asks for.
    pub intent: Intent,
    /// Facebook's message id, the key that de-duplicates redeliveries; only its hash is stored.
    pub mid: Option<String>,
    /// When the person acted (Facebook's timestamp; deliveries may arrive out of order).
    pub event_at: DateTime<Utc>,
}

impl fmt::Debug for InboundEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundEvent")
            .field("page_fb_id", &self.page_fb_id)
            .field("kind", &self.kind)
            .field("intent", &self.intent)
            .finish_non_exhaustive()
    }
}

/// Parses a webhook body and classifies each message and postback. Echoes of the Page's own
/// messages, deliveries, reads and other events are not about a person's wishes and are
/// dropped.
pub fn parse(
    body: &[u8],
    keywords: &KeywordSettings,
    signer: &UnsubscribeSigner,
) -> Result<Vec<InboundEvent>, PayloadError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    if body.object != "page" {
        return Err(PayloadError::NotPage(body.object));
    }
    let mut events = Vec::new();
    for (e, entry) in body.entry.into_iter().enumerate() {
        for (m, item) in entry.messaging.into_iter().enumerate() {
            let at = |field: &str| format!("entry[{e}].messaging[{m}].{field}");
            let (kind, mid, intent) = match (item.message, item.postback) {
                (Some(message), _) if !message.is_echo => {
                    let intent = match &message.quick_reply {
                        Some(reply) => classify_payload(&reply.payload, keywords, signer),
                        None => Intent::None,
                    };
                    let intent = match (intent, &message.text) {
                        (Intent::None, Some(text)) => keywords.classify(text),
                        (intent, _) => intent,
                    };
                    (EventKind::Message, message.mid, intent)
                }
                (None, Some(postback)) => {
                    let intent = postback
                        .payload
                        .as_deref()
                        .map_or(Intent::None, |p| classify_payload(p, keywords, signer));
                    (EventKind::Postback, postback.mid, intent)
                }
                _ => continue,
            };
            let psid = item
                .sender
                .ok_or_else(|| PayloadError::Missing(at("sender")))?
                .id;
            let timestamp = item
                .timestamp
                .ok_or_else(|| PayloadError::Missing(at("timestamp")))?;
            let event_at = DateTime::from_timestamp_millis(timestamp)
                .ok_or_else(|| PayloadError::Missing(at("timestamp (a valid time)")))?;
            events.push(InboundEvent {
                page_fb_id: entry.id.clone(),
                psid,
                kind,
                intent,
                mid,
                event_at,
            });
        }
    }
    Ok(events)
}

/// A payload is our unsubscribe option when it carries a token we signed, and may otherwise be
/// a keyword (a Page can put "delete my data" in its persistent menu).
fn classify_payload(
    payload: &str,
    keywords: &KeywordSettings,
    signer: &UnsubscribeSigner,
) -> Intent {
    match unsubscribe::token_from_payload(payload) {
        Some(token) => match signer.verify(token) {
            Ok(_) => Intent::Unsubscribe,
            Err(error) => {
                tracing::info!(%error, "unsubscribe payload refused");
                Intent::None
            }
        },
        None => keywords.classify(payload),
    }
}
