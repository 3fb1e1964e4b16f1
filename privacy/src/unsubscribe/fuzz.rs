//! Fuzzing of the unsubscribe token decoder: arbitrary input never panics, what we sign
//! round-trips, and nothing we did not sign verifies (a changed character, random bytes with a
//! known key id, another key under the same id). `FUZZ_CASES` sets the cases per property
//! (`bench/fuzz` runs them long).

use proptest::prelude::*;

use super::*;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn signer(secret: [u8; 32]) -> UnsubscribeSigner {
    UnsubscribeSigner::new(&UnsubscribeSettings {
        keys: vec![UnsubscribeKey {
            id: 1,
            secret: SecretString::from(base64::engine::general_purpose::STANDARD.encode(secret)),
        }],
        current_key: 1,
        base_url: None,
    })
    .unwrap()
}

fn claims() -> impl Strategy<Value = UnsubscribeClaims> {
    (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(subscriber_id, page_id, campaign_id)| {
        UnsubscribeClaims {
            subscriber_id,
            page_id,
            campaign_id,
        }
    })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_input_never_panics(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,80}",
        any::<Vec<u8>>().prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
    ]) {
        let _ = signer([1; 32]).verify(&token);
    }

    #[test]
    fn what_we_sign_round_trips(claims in claims()) {
        let signer = signer([1; 32]);
        prop_assert_eq!(signer.verify(&signer.sign(&claims)), Ok(claims));
    }

    #[test]
    fn a_changed_character_is_refused(
        claims in claims(),
        at in any::<prop::sample::Index>(),
        with in proptest::option::of(any::<char>()),
        insert in any::<bool>(),
    ) {
        let signer = signer([1; 32]);
        let token = signer.sign(&claims);
        let at = at.index(token.len());
        let mut changed = token.clone();
        match (with, insert) {
            (Some(c), true) => changed.insert(at, c),
            (Some(c), false) => changed.replace_range(at..=at, &c.to_string()),
            (None, _) => { changed.remove(at); }
        }
        prop_assume!(changed != token);
        prop_assert!(signer.verify(&changed).is_err(), "{token} -> {changed}");
    }

    #[test]
    fn random_bytes_under_a_known_key_id_are_refused(
        body in proptest::collection::vec(any::<u8>(), 3..40),
    ) {
        let mut bytes = vec![VERSION, 1];
        bytes.extend(body);
        prop_assert!(signer([1; 32]).verify(&URL_SAFE_NO_PAD.encode(bytes)).is_err());
    }

    #[test]
    fn another_key_under_the_same_id_is_refused(claims in claims(), secret in any::<[u8; 32]>()) {
        prop_assume!(secret != [1; 32]);
        let forged = signer(secret).sign(&claims);
        prop_assert_eq!(signer([1; 32]).verify(&forged), Err(TokenError::BadSignature));
    }
}
