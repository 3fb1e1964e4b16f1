//! `moonengage operator …`: MoonEngage's own staff. An operator keeps the platform's records —
//! policy versions, the incident register, platform-level data-subject requests — through the
//! API; nobody else sees those routes. Operators are made from a shell only (shell access to
//! the platform is trusted), never through the API.

use anyhow::Context as _;
use clap::Subcommand;
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::origin::Origin;
use moonengage_accounts::users::{self, normalize_email};
use moonengage_accounts::{Role, tokens, workspaces};
use moonengage_core::settings::Settings;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// The name of the workspace each operator gets to hold their tokens.
const OPERATORS_WORKSPACE: &str = "MoonEngage operators";

/// `moonengage operator …`
#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Make the user with this e-mail (created when new) an operator, with a workspace of their
    /// own ("MoonEngage operators"); prints the workspace id, then their first API token, once.
    Create {
        /// The operator's login e-mail.
        #[arg(long)]
        email: String,
    },
}

/// Runs an `operator` command.
pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: OperatorCommand,
) -> anyhow::Result<()> {
    let OperatorCommand::Create { email } = command;
    let email = normalize_email(&email)?;
    let created = workspaces::create(pool, OPERATORS_WORKSPACE, &email).await?;
    users::make_operator(pool, created.owner_id).await?;
    let mut tx = pool
        .begin()
        .await
        .context("creating the operator's token")?;
    let token = tokens::create(
        &mut tx,
        tokens::Request {
            workspace_id: created.workspace_id,
            user_id: created.owner_id,
            name: "first token (moonengage operator)",
            role: Role::Owner,
            days: settings.accounts.token_days,
            max_days: settings.accounts.token_max_days,
        },
    )
    .await?;
    activity::record(
        &mut *tx,
        created.owner_id,
        Some(created.workspace_id),
        EventKind::TokenCreated,
        &Origin::default(),
    )
    .await?;
    tx.commit()
        .await
        .context("committing the operator's token")?;
    tracing::info!(
        user_id = created.owner_id,
        workspace_id = created.workspace_id,
        "operator created"
    );
    eprintln!(
        "operator's API token {} (expires {}), shown only now:",
        token.id, token.expires_at
    );
    println!("{}", created.workspace_id);
    println!("{}", token.token.expose_secret());
    Ok(())
}
