//! `moonengage`: the admin command line — migrations, keys, Pages, campaigns, demo data — and
//! the local demo that runs the whole system.

mod admin;
mod demo;
mod dsr;
mod incident;
mod keys;
mod maintenance;
mod operator;
mod policy;
mod workspace;

use clap::{Parser, Subcommand};
use moonengage_core::db;
use moonengage_core::settings::Settings;
use moonengage_ops::telemetry;

#[derive(Parser)]
#[command(
    name = "moonengage",
    about = "MoonEngage delivery backend: admin commands and demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the queue's and the application's migrations (the Procfile's release step).
    Migrate,
    /// Print a fresh set of production keys as environment variables; `keys rotate` and
    /// `keys prune` manage the data keys of the database.
    Keys {
        #[command(subcommand)]
        command: Option<keys::KeysCommand>,
    },
    /// Manage Pages.
    #[command(subcommand)]
    Page(admin::PageCommand),
    /// Create workspaces and their owners (the first API token cannot come from the API).
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
    /// Make MoonEngage's operators (policy versions, the incident register, platform-level
    /// requests).
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Maintenance access: an operator's token for a grant an owner gave.
    #[command(subcommand)]
    Maintenance(maintenance::MaintenanceCommand),
    /// Manage campaigns.
    #[command(subcommand)]
    Campaign(admin::CampaignCommand),
    /// Manage subscribers.
    #[command(subcommand)]
    Subscribers(admin::SubscribersCommand),
    /// Run the whole system locally and send a demo campaign through the sandbox.
    Demo(demo::DemoArgs),
    /// Act on data-subject requests.
    #[command(subcommand)]
    Dsr(dsr::DsrCommand),
    /// Publish privacy-policy versions (the platform's: an operator's command).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Keep the breach register and tell the people affected (the platform's: an operator's
    /// command).
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Keys { command: None } = cli.command {
        keys::print();
        return Ok(());
    }
    let settings = Settings::load()?;
    match cli.command {
        Command::Demo(args) => demo::run(settings, args).await,
        command => {
            telemetry::init(settings.app.is_production());
            let pool = db::connect(&settings.database.direct())?;
            match command {
                Command::Migrate => {
                    db::migrate(&pool).await?;
                    println!("migrations applied");
                    Ok(())
                }
                Command::Page(command) => admin::page(&pool, &settings, command).await,
                Command::Workspace(command) => workspace::run(&pool, &settings, command).await,
                Command::Operator(command) => operator::run(&pool, &settings, command).await,
                Command::Maintenance(command) => maintenance::run(&pool, command).await,
                Command::Campaign(command) => admin::campaign(&pool, command).await,
                Command::Subscribers(command) => {
                    admin::subscribers(&pool, &settings, command).await
                }
                Command::Policy(command) => policy::run(&pool, &settings, command).await,
                Command::Dsr(command) => dsr::run(&pool, &settings, command).await,
                Command::Incident(command) => incident::run(&pool, &settings, command).await,
                Command::Keys {
                    command: Some(command),
                } => keys::run(&pool, &settings, command).await,
                Command::Keys { command: None } | Command::Demo(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}
