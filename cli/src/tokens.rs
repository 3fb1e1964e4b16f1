//! `moonengage admin-token …`: bearer tokens of the admin API, for bootstrapping (the first
//! token cannot come from the API) and for revoking one from a shell.

use clap::Subcommand;
use moonengage_core::admin_tokens;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// `moonengage admin-token …`
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it once (only its hash is stored).
    Create {
        /// Who or what will use it.
        #[arg(long)]
        name: String,
    },
    /// Revoke a token by id; effective on its next request.
    Revoke {
        /// Token id.
        id: i64,
    },
}

/// Runs an `admin-token` command.
pub async fn run(pool: &PgPool, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name } => {
            let created = admin_tokens::create(pool, &name).await?;
            eprintln!("token {} created; it is shown only now:", created.id);
            println!("{}", created.token.expose_secret());
        }
        TokenCommand::Revoke { id } => {
            anyhow::ensure!(
                admin_tokens::revoke(pool, id).await?,
                "no live token with id {id}"
            );
            println!("token {id} revoked");
        }
    }
    Ok(())
}
