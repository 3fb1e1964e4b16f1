//! `moonengage maintenance token`: an operator's token for a maintenance grant an owner gave.
//! Operators work from MoonEngage's side, so the token comes from the command line, not the
//! API: bound to the grant, admin at most, expiring with it (printed once).

use clap::Subcommand;
use moonengage_accounts::maintenance;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// `moonengage maintenance …`
#[derive(Subcommand)]
pub enum MaintenanceCommand {
    /// Issue the operator named on a live grant a token bound to it; prints it once.
    Token {
        /// The grant's id (the owner sees it in their list and e-mail).
        #[arg(long)]
        grant: i64,
        /// The operator's e-mail, as named on the grant.
        #[arg(long)]
        operator_email: String,
    },
}

/// Runs a `maintenance` command.
pub async fn run(pool: &PgPool, command: MaintenanceCommand) -> anyhow::Result<()> {
    let MaintenanceCommand::Token {
        grant,
        operator_email,
    } = command;
    let token = maintenance::token(pool, grant, &operator_email).await?;
    eprintln!(
        "maintenance token {} for grant {grant} (expires {}), shown only now:",
        token.id, token.expires_at
    );
    println!("{}", token.token.expose_secret());
    Ok(())
}
