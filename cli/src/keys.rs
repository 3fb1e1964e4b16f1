//! `moonengage keys`: fresh production secrets, so nobody deploys the dev keys of
//! `config/default.toml`.

use base64::Engine;
use moonengage_core::crypto::generate_identity;
use secrecy::ExposeSecret;

fn random_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Prints the variables to set; keep the identity somewhere safe — without it no data opens.
pub fn print() {
    let (identity, recipient) = generate_identity();
    println!("# age recipient (public, for reference): {recipient}");
    println!(
        "MOONENGAGE__CRYPTO__AGE_IDENTITIES={}",
        identity.expose_secret()
    );
    println!("MOONENGAGE__CRYPTO__BLIND_INDEX_KEY={}", random_base64());
    println!("MOONENGAGE__UNSUBSCRIBE__KEYS=1:{}", random_base64());
    println!("MOONENGAGE__UNSUBSCRIBE__CURRENT_KEY=1");
    println!("MOONENGAGE__MESSENGER__APP_SECRET=<your app secret>");
    println!("MOONENGAGE__MESSENGER__VERIFY_TOKEN={}", random_base64());
}
