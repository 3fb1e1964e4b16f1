//! `moonengage incident …`: the breach register from the command line, as the admin API keeps
//! it for operators (`/api/v1/incidents`). The register is the platform's, not a workspace's:
//! whoever has shell access to the platform is trusted as an operator, so this takes no
//! workspace. Prints JSON.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use moonengage_core::settings::Settings;
use moonengage_privacy::incidents::{
    self, Affected, DataCategory, IncidentStatus, IncidentUpdate, NewIncident,
};
use sqlx::PgPool;

/// `moonengage incident …`
#[derive(Subcommand)]
pub enum IncidentCommand {
    /// Declare a personal-data breach; admins are e-mailed and the 72 hours to inform the
    /// supervisory authority start from `--detected-at`.
    Declare {
        /// When it was detected (RFC 3339, e.g. 2026-12-01T09:00:00Z).
        #[arg(long)]
        detected_at: DateTime<Utc>,
        /// Categories of data, comma-separated: messenger_ids, first_names, consent_evidence,
        /// delivery_records, data_requests, page_tokens.
        #[arg(long, value_delimiter = ',', required = true)]
        categories: Vec<DataCategory>,
        /// How many people are affected (an estimate; update it later).
        #[arg(long)]
        people: i32,
        /// What happened, without naming anybody (people read it if they are told).
        #[arg(long)]
        description: String,
    },
    /// Change an incident: its status (open, reported, closed: forward only), count or
    /// categories.
    Update {
        /// The incident.
        id: i64,
        /// `reported` once the authority is informed, `closed` when dealt with.
        #[arg(long)]
        status: Option<IncidentStatus>,
        /// A firmer count.
        #[arg(long)]
        people: Option<i32>,
        /// A fuller list, comma-separated.
        #[arg(long, value_delimiter = ',')]
        categories: Option<Vec<DataCategory>>,
    },
    /// List the register, newest first.
    List,
    /// Tell the people affected through Messenger: the subscribers of `--page`, or with `--all`
    /// everybody we hold data about. Once per incident.
    Notify {
        /// The incident.
        id: i64,
        /// The Page (internal id) whose subscribers are affected.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        page: Option<i64>,
        /// Everybody we hold data about is affected.
        #[arg(long)]
        all: bool,
    },
}

/// Runs an `incident` command.
pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: IncidentCommand,
) -> anyhow::Result<()> {
    let json = match command {
        IncidentCommand::Declare {
            detected_at,
            categories,
            people,
            description,
        } => serde_json::to_string_pretty(
            &incidents::declare(
                pool,
                &NewIncident {
                    detected_at,
                    categories,
                    people_affected: people,
                    description,
                },
            )
            .await?,
        )?,
        IncidentCommand::Update {
            id,
            status,
            people,
            categories,
        } => serde_json::to_string_pretty(
            &incidents::update(
                pool,
                id,
                &IncidentUpdate {
                    status,
                    people_affected: people,
                    categories,
                },
            )
            .await?,
        )?,
        IncidentCommand::List => serde_json::to_string_pretty(&incidents::list(pool).await?)?,
        IncidentCommand::Notify { id, page, .. } => {
            let affected = page.map_or(Affected::Everyone, Affected::Page);
            serde_json::to_string_pretty(
                &incidents::decide_notice(pool, id, affected, settings.queue.max_attempts).await?,
            )?
        }
    };
    println!("{json}");
    Ok(())
}
