//! `moonengage workspace …`: bootstrapping accounts from a shell. The first owner of a workspace
//! cannot come from the API, so this creates the workspace, its owner and the owner's first
//! personal API token (shown once); an owner without a password is e-mailed a link to set one
//! (an invitation for the owner role).

use anyhow::Context as _;
use clap::Subcommand;
use moonengage_accounts::activity::{self, EventKind};
use moonengage_accounts::alerts::{self, AccountAlert};
use moonengage_accounts::origin::Origin;
use moonengage_accounts::users::normalize_email;
use moonengage_accounts::{Role, invitations, tokens, users, workspaces};
use moonengage_core::settings::Settings;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// `moonengage workspace …`
#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace owned by the user with this e-mail (created when new); prints the
    /// workspace id, then the owner's first API token, once.
    Create {
        /// The business's name for it.
        #[arg(long)]
        name: String,
        /// The owner's login e-mail.
        #[arg(long)]
        owner_email: String,
    },
    /// Make the user with this e-mail (created when new) an owner of an existing workspace, e.g.
    /// the "Default" one that holds Pages registered before accounts existed; prints their API
    /// token, once.
    AddOwner {
        /// Workspace id.
        #[arg(long)]
        workspace: i64,
        /// The owner's login e-mail.
        #[arg(long)]
        email: String,
    },
}

/// Runs a `workspace` command.
pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    command: WorkspaceCommand,
) -> anyhow::Result<()> {
    let (workspace_id, owner_id, email) = match command {
        WorkspaceCommand::Create { name, owner_email } => {
            let email = normalize_email(&owner_email)?;
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let created = workspaces::create(pool, &name, &email).await?;
            (created.workspace_id, created.owner_id, email)
        }
        WorkspaceCommand::AddOwner { workspace, email } => {
            let email = normalize_email(&email)?;
            let mut tx = pool.begin().await.context("adding an owner")?;
            let (user_id, _) = users::find_or_create(&mut *tx, &email).await?;
            workspaces::set_member(&mut tx, workspace, user_id, Role::Owner)
                .await
                .with_context(|| format!("no workspace with id {workspace}"))?;
            activity::record(
                &mut *tx,
                user_id,
                Some(workspace),
                EventKind::MemberAdded,
                &Origin::default(),
            )
            .await?;
            tx.commit().await.context("committing a new owner")?;
            (workspace, user_id, email)
        }
    };
    let mut tx = pool.begin().await.context("creating the owner's token")?;
    let token = tokens::create(
        &mut tx,
        tokens::Request {
            workspace_id,
            user_id: owner_id,
            name: "first token (moonengage workspace)",
            role: Role::Owner,
            days: settings.accounts.token_days,
            max_days: settings.accounts.token_max_days,
        },
    )
    .await?;
    activity::record(
        &mut *tx,
        owner_id,
        Some(workspace_id),
        EventKind::TokenCreated,
        &Origin::default(),
    )
    .await?;
    alerts::alert(
        &mut *tx,
        AccountAlert::TokenCreated {
            user_id: owner_id,
            token_id: token.id,
        },
    )
    .await?;
    let no_password: bool =
        sqlx::query_scalar("SELECT password_hash IS NULL FROM users WHERE id = $1")
            .bind(owner_id)
            .fetch_one(&mut *tx)
            .await
            .context("reading the owner's account")?;
    if no_password {
        // A set-password e-mail: an invitation for the owner role, accepted by choosing one.
        invitations::create(
            &mut tx,
            invitations::New {
                workspace_id,
                email: &email,
                role: Role::Owner,
                invited_by: None,
                hours: settings.accounts.invitation_hours,
            },
        )
        .await?;
        eprintln!("a link to set the owner's password is e-mailed to them");
    }
    tx.commit().await.context("committing the owner's token")?;
    eprintln!(
        "workspace {workspace_id}: owner's API token {} (expires {}), shown only now:",
        token.id, token.expires_at
    );
    println!("{workspace_id}");
    println!("{}", token.token.expose_secret());
    Ok(())
}
