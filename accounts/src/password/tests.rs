use secrecy::SecretString;

use super::*;

#[test]
fn the_length_rule_counts_characters_not_bytes() {
    assert_eq!(
        check("short-pass1", "a@example.com"),
        Err(PasswordRejected::TooShort)
    );
    assert_eq!(
        check("ŝŝŝŝŝŝŝŝŝŝŝ", "a@example.com"),
        Err(PasswordRejected::TooShort)
    );
    assert_eq!(
        check(&"x7".repeat(129), "a@example.com"),
        Err(PasswordRejected::TooLong)
    );
    assert_eq!(check("river otter lantern", "a@example.com"), Ok(()));
}

#[test]
fn common_and_repeated_passwords_are_refused_whatever_their_case() {
    for password in [
        "Password1234",
        "QWERTYUIOP123",
        "aaaaaaaaaaaa",
        "abcabcabcabc",
        "1212121212121212",
    ] {
        assert_eq!(
            check(password, "a@example.com"),
            Err(PasswordRejected::Common),
            "{password}"
        );
    }
}

#[test]
fn a_password_built_from_the_account_name_is_refused() {
    assert_eq!(
        check("JaneDoe2024!!", "janedoe@example.com"),
        Err(PasswordRejected::Contextual)
    );
    assert_eq!(
        check("moonengage-2024", "x@example.com"),
        Err(PasswordRejected::Contextual)
    );
    assert_eq!(
        check("janedoe walks the long dog", "janedoe@example.com"),
        Ok(())
    );
}

#[test]
fn every_listed_common_password_is_long_enough_to_need_the_list() {
    for common in COMMON.lines() {
        assert!(
            common.chars().count() >= MIN_CHARS,
            "{common} is caught by length already"
        );
        assert_eq!(common, common.to_lowercase());
    }
}

#[tokio::test]
async fn a_hash_verifies_its_password_only_and_unknown_accounts_never_verify() {
    let stored = hash(SecretString::from("river otter lantern"))
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
    assert!(
        verify(
            SecretString::from("river otter lantern"),
            Some(stored.clone())
        )
        .await
        .unwrap()
    );
    assert!(
        !verify(SecretString::from("river otter lanterN"), Some(stored))
            .await
            .unwrap()
    );
    assert!(
        !verify(SecretString::from("anything at all"), None)
            .await
            .unwrap()
    );
}
