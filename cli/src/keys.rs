//! `moonengage keys`: fresh production secrets, so nobody deploys the dev keys of
//! `config/default.toml`; `keys rotate` and `keys prune`: data-key rotation.

use anyhow::Context as _;
use base64::Engine;
use clap::Subcommand;
use moonengage_core::settings::Settings;
use moonengage_privacy::crypto::generate_identity;
use moonengage_privacy::rotation as key_rotation;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// Data-key maintenance.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Add a data key wrapped to the configured age recipients and queue the job that re-seals
    /// every personal field under it, online and in batches (a worker must be running). When it
    /// is done, the older data keys are retired and removed. To move to a new age identity, add
    /// it to `crypto.age_identities` (keeping the old one), restart, then rotate.
    Rotate,
    /// Remove retired data keys that no sealed value uses any more (the rotate job does this
    /// itself when it finishes).
    Prune,
}

/// Runs a data-key command.
pub async fn run(pool: &PgPool, settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let key_id =
                key_rotation::begin(pool, &settings.crypto, settings.queue.max_attempts).await?;
            println!(
                "data key {key_id} added: it seals new values in {:?}, and the rotate job then \
                 re-seals every personal field under it and removes the older keys",
                settings.crypto.activation_delay()
            );
        }
        KeysCommand::Prune => {
            let removed = key_rotation::remove_unused(pool).await?;
            let left: Vec<(i32, bool)> =
                sqlx::query_as("SELECT id, retired_at IS NOT NULL FROM data_keys ORDER BY id")
                    .fetch_all(pool)
                    .await
                    .context("listing data keys")?;
            println!("removed data keys {removed:?}; left (id, retired): {left:?}");
        }
    }
    Ok(())
}

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
