//! `moonengage dsr …`: data-subject requests from the command line, as the admin API does, for
//! operators without an API token at hand.

use clap::Subcommand;
use moonengage_core::settings::Settings;
use moonengage_privacy::export_link;
use sqlx::PgPool;

/// `moonengage dsr …`
#[derive(Subcommand)]
pub enum DsrCommand {
    /// Re-issue the download link of an export still held: it gets a new link (the old one
    /// stops working), sent at once inside the person's window, else with the reply to their
    /// next message.
    ReissueExportLink {
        /// The export request's id.
        request_id: i64,
    },
}

/// Runs a `dsr` command.
pub async fn run(pool: &PgPool, settings: &Settings, command: DsrCommand) -> anyhow::Result<()> {
    match command {
        DsrCommand::ReissueExportLink { request_id } => {
            export_link::reissue(pool, request_id, settings.queue.max_attempts).await?;
            println!("export link of request {request_id} re-issued");
            Ok(())
        }
    }
}
