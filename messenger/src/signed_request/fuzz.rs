//! Fuzzing of the data-deletion `signed_request`: arbitrary input never panics, what we sign
//! round-trips, and a changed character or a random signature is refused.
//! `FUZZ_CASES` sets the cases per property (`bench/fuzz` runs them long).

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::webhook::hmac_sha256;

const SECRET: &[u8] = b"app-secret";

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn sign_bytes(payload: &[u8], secret: &[u8]) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload);
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, payload.as_bytes()));
    format!("{signature}.{payload}")
}

fn valid(user_id: &str, now: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"algorithm": "HMAC-SHA256", "expires": now + 60,
                               "issued_at": now, "user_id": user_id}))
    .unwrap()
}

/// A JSON value near the expected payload: each field any of several shapes.
fn near_payload() -> impl Strategy<Value = serde_json::Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(null)),
        any::<String>().prop_map(|s| json!(s)),
    ];
    (
        prop_oneof![
            Just(json!("HMAC-SHA256")),
            Just(json!("hmac-sha256")),
            any::<String>().prop_map(|s| json!(s)),
            Just(json!(1))
        ],
        number.clone(),
        number.clone(),
        prop_oneof![
            number,
            "[a-zA-Z0-9]{0,80}".prop_map(|s| json!(s)),
            Just(json!([1])),
            Just(json!({}))
        ],
    )
        .prop_map(|(algorithm, expires, issued_at, user_id)| {
            json!({"algorithm": algorithm, "expires": expires, "issued_at": issued_at,
                   "user_id": user_id})
        })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_input_never_panics(input in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.-]{0,200}",
        (any::<Vec<u8>>(), any::<Vec<u8>>()).prop_map(|(s, p)| format!("{}.{}", URL_SAFE_NO_PAD.encode(s), URL_SAFE_NO_PAD.encode(p))),
    ]) {
        let _ = verify(&input, SECRET, Utc::now());
    }

    #[test]
    fn any_signed_payload_never_panics_and_names_only_a_plain_id(
        payload in prop_oneof![near_payload().prop_map(|v| serde_json::to_vec(&v).unwrap()), any::<Vec<u8>>()],
    ) {
        if let Ok(request) = verify(&sign_bytes(&payload, SECRET), SECRET, Utc::now()) {
            prop_assert!(!request.user_id.is_empty() && request.user_id.len() <= 64);
            prop_assert!(request.user_id.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn what_we_sign_round_trips(user_id in "[A-Za-z0-9]{1,64}") {
        let now = Utc::now();
        let request = verify(&sign_bytes(&valid(&user_id, now.timestamp()), SECRET), SECRET, now);
        prop_assert_eq!(request.map(|r| r.user_id), Ok(user_id));
    }

    #[test]
    fn a_changed_character_is_refused(
        user_id in "[0-9]{1,20}",
        at in any::<prop::sample::Index>(),
        with in proptest::option::of(any::<char>()),
        insert in any::<bool>(),
    ) {
        let now = Utc::now();
        let signed = sign_bytes(&valid(&user_id, now.timestamp()), SECRET);
        let at = at.index(signed.len());
        let mut changed = signed.clone();
        match (with, insert) {
            (Some(c), true) => changed.insert(at, c),
            (Some(c), false) => changed.replace_range(at..=at, &c.to_string()),
            (None, _) => { changed.remove(at); }
        }
        // Surrounding white space is not part of the request.
        prop_assume!(changed.trim() != signed);
        prop_assert!(verify(&changed, SECRET, now).is_err(), "{changed}");
    }

    #[test]
    fn a_random_signature_or_another_secret_is_refused(
        user_id in "[0-9]{1,20}",
        random in proptest::collection::vec(any::<u8>(), 0..64),
        other in any::<Vec<u8>>(),
    ) {
        let now = Utc::now();
        let payload = valid(&user_id, now.timestamp());
        let encoded = URL_SAFE_NO_PAD.encode(&payload);
        prop_assume!(random != hmac_sha256(SECRET, encoded.as_bytes()));
        let forged = format!("{}.{encoded}", URL_SAFE_NO_PAD.encode(&random));
        prop_assert_eq!(verify(&forged, SECRET, now), Err(SignedRequestError::BadSignature));
        prop_assume!(hmac_sha256(&other, encoded.as_bytes()) != hmac_sha256(SECRET, encoded.as_bytes()));
        prop_assert_eq!(
            verify(&sign_bytes(&payload, &other), SECRET, now),
            Err(SignedRequestError::BadSignature)
        );
    }
}
