//! Admin commands for Pages, campaigns and demo subscribers. Each names the workspace it acts
//! in (`--workspace`), as an API token does, and refuses another workspace's object by name.

use chrono::{DateTime, Duration, Utc};
use clap::Subcommand;
use moonengage_core::campaigns;
use moonengage_core::pages::{self, NewPage};
use moonengage_core::settings::Settings;
use moonengage_core::subscribers::{self, NewSubscriber};
use moonengage_privacy::crypto::Keyring;
use secrecy::SecretString;
use sqlx::PgPool;

/// `moonengage page …`
#[derive(Subcommand)]
pub enum PageCommand {
    /// Register a Page (or update its name, token and rate); prints its id.
    Add {
        /// The workspace that owns it.
        #[arg(long)]
        workspace: i64,
        /// Facebook's id of the Page.
        #[arg(long)]
        fb_page_id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The Page access token (read from the environment to keep it out of shell history).
        #[arg(long, env = "PAGE_ACCESS_TOKEN", hide_env_values = true)]
        access_token: String,
        /// Messages per second (1-300).
        #[arg(long, default_value_t = pages::DEFAULT_SEND_RATE)]
        send_rate: i32,
    },
}

/// `moonengage campaign …`
#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Create a draft campaign; prints its id.
    Create {
        /// The workspace the campaign belongs to; the Page must be one of its own.
        #[arg(long)]
        workspace: i64,
        /// Internal id of the Page.
        #[arg(long)]
        page: i64,
        /// Name shown to admins.
        #[arg(long)]
        name: String,
        /// Handlebars template: `{{page_name}}`, and `{{first_name default="there"}}` (a name needs
        /// a fallback for people whose name is not known).
        #[arg(long)]
        template: String,
    },
    /// Schedule a campaign (now, unless `--at` is given).
    Schedule {
        /// The workspace the campaign belongs to (another workspace's is refused).
        #[arg(long)]
        workspace: i64,
        /// Campaign id.
        id: i64,
        /// RFC 3339 time to start at.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Show a campaign's state and counters as JSON.
    Show {
        /// The workspace the campaign belongs to (another workspace's is refused).
        #[arg(long)]
        workspace: i64,
        /// Campaign id.
        id: i64,
    },
}

/// `moonengage subscribers …`
#[derive(Subcommand)]
pub enum SubscribersCommand {
    /// Add made-up opted-in subscribers to a Page, for demos and load tests.
    Seed {
        /// The workspace the Page belongs to (another workspace's is refused).
        #[arg(long)]
        workspace: i64,
        /// Internal id of the Page.
        #[arg(long)]
        page: i64,
        /// Subscribers inside their 24-hour window.
        #[arg(long)]
        count: usize,
        /// Extra subscribers whose window has closed.
        #[arg(long, default_value_t = 0)]
        outside_window: usize,
        /// Extra subscribers who unsubscribed.
        #[arg(long, default_value_t = 0)]
        unsubscribed: usize,
    },
}

/// Runs a `page` command.
pub async fn page(pool: &PgPool, settings: &Settings, command: PageCommand) -> anyhow::Result<()> {
    let PageCommand::Add {
        workspace,
        fb_page_id,
        name,
        access_token,
        send_rate,
    } = command;
    let keyring = Keyring::load_or_create(pool, &settings.crypto).await?;
    let id = pages::register(
        pool,
        &keyring,
        &NewPage {
            workspace_id: workspace,
            fb_page_id: &fb_page_id,
            name: &name,
            access_token: &SecretString::from(access_token),
            send_rate,
        },
    )
    .await?;
    println!("{id}");
    Ok(())
}

/// Runs a `campaign` command.
pub async fn campaign(pool: &PgPool, command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Create {
            workspace,
            page,
            name,
            template,
        } => {
            let new = campaigns::NewCampaign {
                workspace_id: workspace,
                page_id: page,
                name: &name,
                template: &template,
            };
            let id = campaigns::create(pool, &new)
                .await
                .map_err(|error| not_in(error, workspace, "Page", page))?;
            println!("{id}");
        }
        CampaignCommand::Schedule { workspace, id, at } => {
            campaigns::schedule(pool, workspace, id, at.unwrap_or_else(Utc::now))
                .await
                .map_err(|error| not_in(error, workspace, "campaign", id))?;
            println!("campaign {id} scheduled");
        }
        CampaignCommand::Show { workspace, id } => {
            let progress = campaigns::progress(pool, workspace, id)
                .await?
                .ok_or_else(|| missing(workspace, "campaign", id))?;
            println!("{}", serde_json::to_string_pretty(&progress)?);
        }
    }
    Ok(())
}

/// The error for an object the workspace does not have (another workspace's, or none at all).
pub fn missing(workspace: i64, what: &str, id: i64) -> anyhow::Error {
    anyhow::anyhow!("workspace {workspace} has no {what} {id} (it may belong to another workspace)")
}

/// A campaign error, with "not found" naming the object and the workspace.
fn not_in(error: campaigns::CampaignError, workspace: i64, what: &str, id: i64) -> anyhow::Error {
    match error {
        campaigns::CampaignError::NotFound(_) => missing(workspace, what, id),
        other => other.into(),
    }
}

/// Runs a `subscribers` command.
pub async fn subscribers(
    pool: &PgPool,
    settings: &Settings,
    command: SubscribersCommand,
) -> anyhow::Result<()> {
    let SubscribersCommand::Seed {
        workspace,
        page,
        count,
        outside_window,
        unsubscribed,
    } = command;
    let keyring = Keyring::load_or_create(pool, &settings.crypto).await?;
    let page = Scoped {
        workspace_id: workspace,
        page_id: page,
    };
    let added = seed(pool, &keyring, page, count, outside_window, unsubscribed).await?;
    println!("{added} subscribers added");
    Ok(())
}

const FIRST_NAMES: [&str; 8] = [
    "Amara", "Bjorn", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana",
];

/// A Page named with the workspace it must belong to.
#[derive(Debug, Clone, Copy)]
pub struct Scoped {
    /// The workspace.
    pub workspace_id: i64,
    /// The Page.
    pub page_id: i64,
}

/// Adds made-up subscribers in batches to a Page of the workspace: `count` inside their window,
/// then the ineligible ones.
pub async fn seed(
    pool: &PgPool,
    keyring: &Keyring,
    page: Scoped,
    count: usize,
    outside_window: usize,
    unsubscribed: usize,
) -> anyhow::Result<u64> {
    let Scoped {
        workspace_id,
        page_id,
    } = page;
    let fb_page_id = pages::fb_page_id(pool, workspace_id, page_id)
        .await?
        .ok_or_else(|| missing(workspace_id, "Page", page_id))?;
    let now = Utc::now();
    let total = count + outside_window + unsubscribed;
    let people: Vec<NewSubscriber> = (0..total)
        .map(|i| {
            let last = if (count..count + outside_window).contains(&i) {
                now - Duration::hours(30)
            } else {
                now - Duration::minutes(5)
            };
            NewSubscriber {
                psid: format!(
                    "{}",
                    1_000_000_000_000_000u64 + rand::random::<u64>() % 8_999_999_999_999_999
                ),
                first_name: Some(FIRST_NAMES[i % FIRST_NAMES.len()].to_owned()),
                opted_in_at: now - Duration::days(3),
                consent_source: "demo".into(),
                last_interaction_at: last,
            }
        })
        .collect();
    let mut added = 0;
    for chunk in people.chunks(5_000) {
        added += subscribers::insert_batch(pool, keyring, page_id, &fb_page_id, chunk).await?;
    }
    if unsubscribed > 0 {
        let last: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM subscribers WHERE page_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(page_id)
        .bind(unsubscribed as i64)
        .fetch_all(pool)
        .await?;
        let mut conn = pool.acquire().await?;
        subscribers::unsubscribe_by_admin(&mut conn, page_id, &last).await?;
    }
    Ok(added)
}
