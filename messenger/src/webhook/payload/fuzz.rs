//! Fuzzing of the webhook payload parser: arbitrary bytes and near-valid bodies never panic,
//! and only an unsubscribe token we signed is read as one (a changed character is not).
//! `FUZZ_CASES` sets the cases per property (`bench/fuzz` runs them long).

use base64::Engine as _;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;
use moonengage_privacy::unsubscribe::{UnsubscribeClaims, UnsubscribeKey, UnsubscribeSettings};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn keywords() -> KeywordSettings {
    KeywordSettings {
        stop: vec!["stop".into()],
        start: vec!["start".into()],
        export: vec!["export my data".into()],
        erase: vec!["delete my data".into()],
    }
}

fn signer() -> UnsubscribeSigner {
    UnsubscribeSigner::new(&UnsubscribeSettings {
        keys: vec![UnsubscribeKey {
            id: 1,
            secret: SecretString::from(base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
        }],
        current_key: 1,
        base_url: None,
    })
    .unwrap()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        "(stop|start|UNSUB:[A-Za-z0-9_-]{0,60}|delete my data)".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::hash_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A valid body with one event, each of whose fields may be replaced by any JSON value.
fn near_valid_body() -> impl Strategy<Value = Value> {
    let field = |valid: Value| prop_oneof![3 => Just(valid), 1 => any_json()];
    (
        field(json!("page")),
        field(json!("1234")),
        field(json!({"id": "42"})),
        field(json!(1_700_000_000_000i64)),
        field(json!({"mid": "m1", "text": "stop", "quick_reply": {"payload": "UNSUB:abc"}})),
        field(json!({"mid": "m2", "payload": "delete my data"})),
        field(json!([])),
    )
        .prop_map(
            |(object, page, sender, timestamp, message, postback, extra)| {
                json!({"object": object, "entry": [
                    {"id": page, "messaging": [
                        {"sender": sender, "timestamp": timestamp, "message": message},
                        {"sender": sender, "timestamp": timestamp, "postback": postback},
                        extra,
                    ]},
                ]})
            },
        )
}

fn body_with_quick_reply(payload: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"object": "page", "entry": [{"id": "1", "messaging": [
        {"sender": {"id": "42"}, "timestamp": 1, "message": {"mid": "m", "quick_reply": {"payload": payload}}}
    ]}]}))
    .unwrap()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in any::<Vec<u8>>()) {
        let _ = parse(&body, &keywords(), &signer());
    }

    #[test]
    fn arbitrary_json_never_panics(body in prop_oneof![any_json(), near_valid_body()]) {
        let parsed = parse(&serde_json::to_vec(&body).unwrap(), &keywords(), &signer());
        prop_assert!(parsed.is_ok(), "JSON is never refused whole");
    }

    #[test]
    fn a_token_we_signed_unsubscribes(subscriber_id in any::<i64>(), page_id in any::<i64>(), campaign_id in any::<i64>()) {
        let signer = signer();
        let token = signer.sign(&UnsubscribeClaims { subscriber_id, page_id, campaign_id });
        let parsed = parse(&body_with_quick_reply(&unsubscribe::payload(&token)), &keywords(), &signer).unwrap();
        prop_assert_eq!(parsed.events[0].intent, Intent::Unsubscribe);
    }

    #[test]
    fn a_changed_token_does_not_unsubscribe(
        subscriber_id in any::<i64>(),
        at in any::<prop::sample::Index>(),
        with in any::<char>(),
    ) {
        let signer = signer();
        let token = signer.sign(&UnsubscribeClaims { subscriber_id, page_id: 7, campaign_id: 9 });
        let at = at.index(token.len());
        let mut changed = token.clone();
        changed.replace_range(at..=at, &with.to_string());
        prop_assume!(changed != token);
        let parsed = parse(&body_with_quick_reply(&unsubscribe::payload(&changed)), &keywords(), &signer).unwrap();
        prop_assert_eq!(parsed.events[0].intent, Intent::None);
    }
}
