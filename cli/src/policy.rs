//! `moonengage policy …`: publish a privacy-policy version from the command line, as the admin
//! API does for operators. Policy versions are the platform's, not a workspace's: whoever has
//! shell access to the platform is trusted as an operator, so this takes no workspace.

use clap::Subcommand;
use moonengage_core::settings::Settings;
use moonengage_privacy::policy::{self, NewVersion};
use sqlx::PgPool;

/// `moonengage policy …`
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Publish a version: people inside their 24-hour window are told at once, the others with
    /// the reply to their next message. Prints what was done as JSON.
    Publish {
        /// The label people see, e.g. `2026-12`; publishing it again does nothing.
        #[arg(long)]
        version: String,
        /// What changed, in a few sentences.
        #[arg(long)]
        summary: String,
        /// Where the full policy is (https).
        #[arg(long)]
        url: String,
    },
}

/// Runs a `policy` command.
pub async fn run(pool: &PgPool, settings: &Settings, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Publish {
            version,
            summary,
            url,
        } => {
            let published = policy::publish(
                pool,
                &NewVersion {
                    version: &version,
                    summary: &summary,
                    url: &url,
                },
                settings.queue.max_attempts,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&published)?);
            Ok(())
        }
    }
}
