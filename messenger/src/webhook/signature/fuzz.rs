//! Fuzzing of the webhook signature check: arbitrary headers never panic, what we sign verifies,
//! and nothing else does (a changed byte of the body or the signature, another secret, a random
//! signature). `FUZZ_CASES` sets the cases per property (`bench/fuzz` runs them long).

use proptest::prelude::*;

use super::*;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn header(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_headers_never_panic(
        secret in any::<Vec<u8>>(),
        body in any::<Vec<u8>>(),
        header in proptest::option::of(prop_oneof![any::<String>(), "sha256=[0-9a-fA-F ]{0,70}"]),
    ) {
        let _ = verify_signature(&secret, &body, header.as_deref());
    }

    #[test]
    fn what_we_sign_verifies(secret in any::<Vec<u8>>(), body in any::<Vec<u8>>()) {
        prop_assert_eq!(verify_signature(&secret, &body, Some(&header(&secret, &body))), Ok(()));
    }

    #[test]
    fn a_changed_body_byte_is_refused(
        secret in any::<Vec<u8>>(),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let signed = header(&secret, &body);
        let mut body = body;
        let at = at.index(body.len());
        body[at] ^= flip;
        prop_assert_eq!(verify_signature(&secret, &body, Some(&signed)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_changed_header_character_is_refused(
        secret in any::<Vec<u8>>(),
        body in any::<Vec<u8>>(),
        at in any::<prop::sample::Index>(),
        with in any::<char>(),
    ) {
        let signed = header(&secret, &body);
        let at = at.index(signed.len());
        let mut changed = signed.clone();
        changed.replace_range(at..=at, &with.to_string());
        // Hex digits are read in either case: the same digest in capitals is no forgery.
        prop_assume!(!changed.eq_ignore_ascii_case(&signed));
        prop_assert!(verify_signature(&secret, &body, Some(&changed)).is_err());
    }

    #[test]
    fn a_random_signature_or_another_secret_is_refused(
        secret in any::<Vec<u8>>(),
        other in any::<Vec<u8>>(),
        body in any::<Vec<u8>>(),
        random in any::<[u8; 32]>(),
    ) {
        prop_assume!(random != hmac_sha256(&secret, &body));
        let forged = format!("sha256={}", hex::encode(random));
        prop_assert_eq!(verify_signature(&secret, &body, Some(&forged)), Err(SignatureError::Mismatch));
        prop_assume!(hmac_sha256(&other, &body) != hmac_sha256(&secret, &body));
        prop_assert_eq!(
            verify_signature(&secret, &body, Some(&header(&other, &body))),
            Err(SignatureError::Mismatch)
        );
    }
}
