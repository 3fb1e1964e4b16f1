//! The shape of a Messenger webhook body, parsed and classified in memory, event by event: a
//! malformed event is skipped without costing the others. Texts and payloads are read here and
//! go no further: an [`InboundEvent`] carries only what is stored.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::intent::{Intent, KeywordSettings};
use moonengage_ops::metrics;
use moonengage_privacy::unsubscribe::{self, UnsubscribeSigner};

/// Why a webhook body was refused: only a body that is not JSON at all is (a bad event is
/// skipped, see [`Malformed`]); the message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON.
    #[error("body is not a valid webhook payload: {0}")]
    Json(String),
}

/// What is wrong with one event (or one entry, or the whole body) that was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The body is not a Page subscription's (`object` is not `page`).
    NotPage,
    /// An entry without a Page id, or not an object.
    BadEntry,
    /// A messaging event of the wrong shape.
    BadEvent,
    /// A message or postback without its sender.
    MissingSender,
    /// A message or postback without its time.
    MissingTimestamp,
    /// A time that is not one.
    BadTimestamp,
}

impl Problem {
    /// The metric label (see `metrics::WEBHOOK_PROBLEMS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::NotPage => "not_page",
            Problem::BadEntry => "bad_entry",
            Problem::BadEvent => "bad_event",
            Problem::MissingSender => "missing_sender",
            Problem::MissingTimestamp => "missing_timestamp",
            Problem::BadTimestamp => "bad_timestamp",
        }
    }
}

/// A part of a delivery that was skipped: where it is and what is wrong, never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Its position, e.g. `entry[0].messaging[1]`.
    pub at: String,
    /// What is wrong.
    pub problem: Problem,
}

/// A delivery's events, and what of it was skipped. One bad event never costs the others:
/// Facebook resends a refused delivery whole, and would keep losing every event in it.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The well-formed events about a person, classified.
    pub events: Vec<InboundEvent>,
    /// The skipped parts.
    pub malformed: Vec<Malformed>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    messaging: Vec<serde_json::Value>,
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
/// dropped. A part that is malformed is skipped, counted and logged (its position and
/// problem, nothing of its content); only a body that is not JSON is refused.
pub fn parse(
    body: &[u8],
    keywords: &KeywordSettings,
    signer: &UnsubscribeSigner,
) -> Result<Parsed, PayloadError> {
    let body: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let mut parsed = Parsed::default();
    let mut skip = |at: String, problem: Problem| {
        metrics::webhook_malformed(problem.as_str());
        tracing::info!(%at, problem = problem.as_str(), "malformed webhook event skipped");
        parsed.malformed.push(Malformed { at, problem });
    };
    if body.get("object").and_then(serde_json::Value::as_str) != Some("page") {
        skip("object".into(), Problem::NotPage);
        return Ok(parsed);
    }
    let entries = match body.get("entry") {
        None => &[][..],
        Some(serde_json::Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            skip("entry".into(), Problem::BadEntry);
            return Ok(parsed);
        }
    };
    for (e, entry) in entries.iter().enumerate() {
        let Ok(entry) = Entry::deserialize(entry) else {
            skip(format!("entry[{e}]"), Problem::BadEntry);
            continue;
        };
        for (m, item) in entry.messaging.iter().enumerate() {
            let at = format!("entry[{e}].messaging[{m}]");
            match event(&entry.id, item, keywords, signer) {
                Ok(Some(event)) => parsed.events.push(event),
                Ok(None) => {}
                Err(problem) => skip(at, problem),
            }
        }
    }
    Ok(parsed)
}

/// One messaging event: `None` when it is not about a person's wishes (echo, delivery, read).
fn event(
    page_fb_id: &str,
    item: &serde_json::Value,
    keywords: &KeywordSettings,
    signer: &UnsubscribeSigner,
) -> Result<Option<InboundEvent>, Problem> {
    let item = Messaging::deserialize(item).map_err(|_| Problem::BadEvent)?;
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
        _ => return Ok(None),
    };
    let psid = item.sender.ok_or(Problem::MissingSender)?.id;
    let timestamp = item.timestamp.ok_or(Problem::MissingTimestamp)?;
    let event_at = DateTime::from_timestamp_millis(timestamp).ok_or(Problem::BadTimestamp)?;
    Ok(Some(InboundEvent {
        page_fb_id: page_fb_id.to_owned(),
        psid,
        kind,
        intent,
        mid,
        event_at,
    }))
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

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use secrecy::SecretString;

    use super::*;
    use moonengage_privacy::unsubscribe::{UnsubscribeKey, UnsubscribeSettings};

    fn fixtures() -> (KeywordSettings, UnsubscribeSigner) {
        let keywords = KeywordSettings {
            stop: vec!["stop".into()],
            start: vec!["start".into()],
            export: vec!["export my data".into()],
            erase: vec!["delete my data".into()],
        };
        let signer = UnsubscribeSigner::new(&UnsubscribeSettings {
            keys: vec![UnsubscribeKey {
                id: 1,
                secret: SecretString::from(
                    base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
                ),
            }],
            current_key: 1,
            base_url: None,
        })
        .unwrap();
        (keywords, signer)
    }

    fn parse_json(body: &serde_json::Value) -> Parsed {
        let (keywords, signer) = fixtures();
        parse(&serde_json::to_vec(body).unwrap(), &keywords, &signer).unwrap()
    }

    #[test]
    fn a_malformed_event_is_skipped_and_the_others_are_kept() {
        let parsed = parse_json(&serde_json::json!({
            "object": "page",
            "entry": [
                {"id": "1", "messaging": [
                    {"timestamp": 1, "message": {"mid": "m1", "text": "no sender"}},
                    {"sender": {"id": "42"}, "message": {"mid": "m2", "text": "no time"}},
                    {"sender": {"id": "43"}, "timestamp": 1, "message": "not an object"},
                    {"sender": {"id": "44"}, "timestamp": 1, "message": {"mid": "m4", "text": "Start"}}
                ]},
                {"messaging": []}
            ]
        }));
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].intent, Intent::Start);
        let problems: Vec<(&str, Problem)> = parsed
            .malformed
            .iter()
            .map(|m| (m.at.as_str(), m.problem))
            .collect();
        assert_eq!(
            problems,
            [
                ("entry[0].messaging[0]", Problem::MissingSender),
                ("entry[0].messaging[1]", Problem::MissingTimestamp),
                ("entry[0].messaging[2]", Problem::BadEvent),
                ("entry[1]", Problem::BadEntry),
            ]
        );
    }

    #[test]
    fn only_a_body_that_is_not_json_is_refused() {
        let parsed = parse_json(&serde_json::json!({"object": "user", "entry": []}));
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.malformed[0].problem, Problem::NotPage);
        let (keywords, signer) = fixtures();
        assert!(matches!(
            parse(b"{\"object\":\"page\",", &keywords, &signer),
            Err(PayloadError::Json(_))
        ));
    }
}
