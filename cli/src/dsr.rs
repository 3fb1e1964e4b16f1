//! `moonengage dsr …`: data-subject requests from the command line, as the admin API does, for
//! operators without an API token at hand.

use clap::Subcommand;
use moonengage_core::settings::Settings;
use moonengage_privacy::dsr::Reach;
use moonengage_privacy::export_link::{self, ReissueError};
use sqlx::PgPool;

/// `moonengage dsr …`
#[derive(Subcommand)]
pub enum DsrCommand {
    /// Re-issue the download link of an export still held: it gets a new link (the old one
    /// stops working), sent at once inside the person's window, else with the reply to their
    /// next message.
    ReissueExportLink {
        /// The workspace the request belongs to (another workspace's is refused).
        #[arg(long)]
        workspace: i64,
        /// The export request's id.
        request_id: i64,
    },
}

/// Runs a `dsr` command.
pub async fn run(pool: &PgPool, settings: &Settings, command: DsrCommand) -> anyhow::Result<()> {
    match command {
        DsrCommand::ReissueExportLink {
            workspace,
            request_id,
        } => {
            let reach = Reach {
                workspace_id: workspace,
                platform: false,
            };
            export_link::reissue(pool, reach, request_id, settings.queue.max_attempts)
                .await
                .map_err(|error| match error {
                    ReissueError::NoSuchRequest(id) => {
                        crate::admin::missing(workspace, "request", id)
                    }
                    other => other.into(),
                })?;
            println!("export link of request {request_id} re-issued");
            Ok(())
        }
    }
}
