use super::*;

fn secret(byte: u8) -> SecretString {
    SecretString::from(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
}

fn settings(current_key: u8, ids: &[u8]) -> UnsubscribeSettings {
    UnsubscribeSettings {
        keys: ids
            .iter()
            .map(|&id| UnsubscribeKey {
                id,
                secret: secret(id),
            })
            .collect(),
        current_key,
        base_url: Some("https://engage.example.com/".into()),
    }
}

fn signer() -> UnsubscribeSigner {
    UnsubscribeSigner::new(&settings(1, &[1])).unwrap()
}

const CLAIMS: UnsubscribeClaims = UnsubscribeClaims {
    subscriber_id: 123_456_789,
    page_id: 42,
    campaign_id: 9_001,
};

#[test]
fn round_trip_and_compact() {
    let signer = signer();
    let token = signer.sign(&CLAIMS);
    assert_eq!(signer.verify(&token), Ok(CLAIMS));
    assert!(token.len() < 60, "{token} is {} chars", token.len());
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    for claims in [
        UnsubscribeClaims {
            subscriber_id: 0,
            page_id: 0,
            campaign_id: 0,
        },
        UnsubscribeClaims {
            subscriber_id: i64::MAX,
            page_id: i64::MAX,
            campaign_id: i64::MAX,
        },
        UnsubscribeClaims {
            subscriber_id: -1,
            page_id: 127,
            campaign_id: 128,
        },
    ] {
        assert_eq!(signer.verify(&signer.sign(&claims)), Ok(claims));
    }
    let large = UnsubscribeClaims {
        subscriber_id: 1_000_000_000_000,
        page_id: 1_000_000,
        campaign_id: 1_000_000_000,
    };
    assert!(signer.sign(&large).len() < 60);
}

#[test]
fn every_byte_tamper_is_rejected() {
    let signer = UnsubscribeSigner::new(&settings(1, &[1, 2])).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(signer.sign(&CLAIMS)).unwrap();
    for i in 0..bytes.len() {
        for flip in [0x01, 0x02, 0x80, 0xff] {
            let mut tampered = bytes.clone();
            tampered[i] ^= flip;
            let token = URL_SAFE_NO_PAD.encode(&tampered);
            assert!(
                signer.verify(&token).is_err(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
    for len in 0..bytes.len() {
        let token = URL_SAFE_NO_PAD.encode(&bytes[..len]);
        assert!(signer.verify(&token).is_err(), "prefix {len} accepted");
    }
    let mut tampered = bytes.clone();
    tampered[4] ^= 1;
    assert_eq!(
        signer.verify(&URL_SAFE_NO_PAD.encode(&tampered)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn every_character_change_is_rejected() {
    let signer = signer();
    let token = signer.sign(&CLAIMS);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. ";
    for (i, original) in token.char_indices() {
        for replacement in alphabet.chars().filter(|&c| c != original) {
            let mut changed = token.clone();
            changed.replace_range(i..i + 1, &replacement.to_string());
            assert!(
                signer.verify(&changed).is_err(),
                "{changed} (position {i}) accepted"
            );
        }
    }
    assert!(signer.verify(&format!("{token}A")).is_err());
    assert!(signer.verify(&token[..token.len() - 1]).is_err());
    assert_eq!(signer.verify(""), Err(TokenError::Malformed));
    assert_eq!(signer.verify(&"A".repeat(500)), Err(TokenError::Malformed));
}

#[test]
fn tokens_of_a_rotated_key_still_verify() {
    let old = UnsubscribeSigner::new(&settings(1, &[1])).unwrap();
    let token = old.sign(&CLAIMS);
    let rotated = UnsubscribeSigner::new(&settings(2, &[1, 2])).unwrap();
    assert_eq!(rotated.verify(&token), Ok(CLAIMS));
    let new_token = rotated.sign(&CLAIMS);
    assert_ne!(new_token, token);
    assert_eq!(URL_SAFE_NO_PAD.decode(&new_token).unwrap()[1], 2);
    assert_eq!(rotated.verify(&new_token), Ok(CLAIMS));
}

#[test]
fn an_unknown_key_is_named() {
    let retired = UnsubscribeSigner::new(&settings(2, &[1, 2])).unwrap();
    let token = retired.sign(&CLAIMS);
    let current = UnsubscribeSigner::new(&settings(3, &[1, 3])).unwrap();
    assert_eq!(current.verify(&token), Err(TokenError::UnknownKey(2)));
}

#[test]
fn another_deployment_cannot_forge() {
    let mut other = settings(1, &[1]);
    other.keys[0].secret = secret(77);
    let forged = UnsubscribeSigner::new(&other).unwrap().sign(&CLAIMS);
    assert_eq!(signer().verify(&forged), Err(TokenError::BadSignature));
}

#[test]
fn payload_round_trips() {
    let signer = signer();
    let token = signer.sign(&CLAIMS);
    let payload = payload(&token);
    assert!(payload.starts_with("UNSUB:"));
    assert_eq!(token_from_payload(&payload), Some(token.as_str()));
    assert_eq!(token_from_payload("GET_STARTED"), None);
}

#[test]
fn settings_errors_name_the_key() {
    let check = |s: UnsubscribeSettings, key: &str| {
        let err = UnsubscribeSigner::new(&s).unwrap_err();
        assert_eq!(err.key(), key, "{err}");
        assert_eq!(s.validate().unwrap_err().key(), key);
    };
    check(settings(1, &[]), "unsubscribe.keys");
    check(settings(1, &[1, 1]), "unsubscribe.keys");
    check(settings(2, &[1]), "unsubscribe.current_key");
    let mut short = settings(1, &[1]);
    short.keys[0].secret = SecretString::from("c2hvcnQ=");
    check(short, "unsubscribe.keys");
    let mut bad_url = settings(1, &[1]);
    bad_url.base_url = Some("engage.example.com".into());
    check(bad_url, "unsubscribe.base_url");
    assert!(settings(1, &[1]).validate().is_ok());
}

#[test]
fn debug_shows_no_secret() {
    let settings = settings(1, &[1]);
    let secret = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let shown = format!(
        "{settings:?} {:?}",
        UnsubscribeSigner::new(&settings).unwrap()
    );
    assert!(!shown.contains(&secret), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
}

#[test]
fn varints_are_canonical() {
    for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, value);
        let mut input = bytes.as_slice();
        assert_eq!(read_varint(&mut input), Some(value));
        assert!(input.is_empty());
    }
    assert_eq!(read_varint(&mut &[0x80, 0x00][..]), None);
    assert_eq!(read_varint(&mut &[0x80][..]), None);
    assert_eq!(
        read_varint(&mut &[0xff; 9].iter().chain(&[0x02]).copied().collect::<Vec<_>>()[..]),
        None
    );
}
