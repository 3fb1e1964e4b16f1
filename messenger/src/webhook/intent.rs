//! What a person's message or postback asks for, decided in memory from configured keywords so
//! the text itself never needs to be stored.

use serde::Deserialize;

/// The `keywords` section: whole messages (or postback payloads) that act on a subscription.
#[derive(Debug, Clone, Deserialize)]
pub struct KeywordSettings {
    /// Unsubscribe at once, e.g. `stop`, `unsubscribe`.
    pub stop: Vec<String>,
    /// Subscribe again after a stop keyword, e.g. `start`.
    pub start: Vec<String>,
    /// Ask for a copy of one's data (GDPR Art. 15/20).
    pub export: Vec<String>,
    /// Ask for one's data to be erased (GDPR Art. 17).
    pub erase: Vec<String>,
}

impl KeywordSettings {
    /// The key of the first empty list, so settings validation can name it.
    pub fn first_empty_list(&self) -> Option<&'static str> {
        [
            ("keywords.stop", &self.stop),
            ("keywords.start", &self.start),
            ("keywords.export", &self.export),
            ("keywords.erase", &self.erase),
        ]
        .into_iter()
        .find(|(_, list)| list.iter().all(|word| normalize(word).is_empty()))
        .map(|(key, _)| key)
    }

    /// What a message text or postback payload asks for; anything unrecognised is `None`.
    pub fn classify(&self, text: &str) -> Intent {
        let text = normalize(text);
        if text.is_empty() {
            return Intent::None;
        }
        let matches = |list: &[String]| list.iter().any(|word| normalize(word) == text);
        if matches(&self.stop) {
            Intent::Stop
        } else if matches(&self.start) {
            Intent::Start
        } else if matches(&self.erase) {
            Intent::Erase
        } else if matches(&self.export) {
            Intent::Export
        } else {
            Intent::None
        }
    }
}

/// Lower case, trimmed, inner whitespace collapsed, trailing punctuation dropped: "Stop!" and
/// "  STOP " both mean stop.
fn normalize(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!', '?'])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// What an event asks for; stored as text in `webhook_events.intent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// An ordinary message: it only opens the 24-hour window (and opts a new person in).
    None,
    /// A stop keyword.
    Stop,
    /// A start keyword: an opt-in that also undoes an earlier stop.
    Start,
    /// The unsubscribe quick reply or postback, with a token we signed.
    Unsubscribe,
    /// A request for a copy of one's data.
    Export,
    /// A request for erasure.
    Erase,
}

impl Intent {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::None => "none",
            Intent::Stop => "stop",
            Intent::Start => "start",
            Intent::Unsubscribe => "unsubscribe",
            Intent::Export => "export",
            Intent::Erase => "erase",
        }
    }

    /// Reads a stored name; an unknown one is treated as an ordinary message.
    pub fn from_stored(name: &str) -> Intent {
        match name {
            "stop" => Intent::Stop,
            "start" => Intent::Start,
            "unsubscribe" => Intent::Unsubscribe,
            "export" => Intent::Export,
            "erase" => Intent::Erase,
            _ => Intent::None,
        }
    }

    /// Whether the person is to be unsubscribed at once.
    pub fn unsubscribes(self) -> bool {
        matches!(self, Intent::Stop | Intent::Unsubscribe)
    }

    /// Whether the event opts its sender in (a new person, or one coming back): any message
    /// that asks for nothing else, and a start keyword.
    pub fn opts_in(self) -> bool {
        matches!(self, Intent::None | Intent::Start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords() -> KeywordSettings {
        KeywordSettings {
            stop: vec!["stop".into(), "Unsubscribe".into(), "opt out".into()],
            start: vec!["start".into()],
            export: vec!["export my data".into()],
            erase: vec!["delete my data".into()],
        }
    }

    #[test]
    fn keywords_match_whole_messages_whatever_the_case_and_spacing() {
        let k = keywords();
        for text in ["STOP", " stop ", "Stop!", "unsubscribe", "Opt   Out."] {
            assert_eq!(k.classify(text), Intent::Stop, "{text}");
        }
        assert_eq!(k.classify("Export my data"), Intent::Export);
        assert_eq!(k.classify("DELETE MY DATA!"), Intent::Erase);
        assert_eq!(k.classify(" Start!"), Intent::Start);
        for text in ["please stop it", "stopped", "", "   ", "hello"] {
            assert_eq!(k.classify(text), Intent::None, "{text}");
        }
    }

    #[test]
    fn stored_names_round_trip() {
        for intent in [
            Intent::None,
            Intent::Stop,
            Intent::Start,
            Intent::Unsubscribe,
            Intent::Export,
            Intent::Erase,
        ] {
            assert_eq!(Intent::from_stored(intent.as_str()), intent);
        }
    }

    #[test]
    fn an_empty_list_is_named() {
        let mut k = keywords();
        assert_eq!(k.first_empty_list(), None);
        k.export = vec![" ".into()];
        assert_eq!(k.first_empty_list(), Some("keywords.export"));
    }
}
