//! The account-alert job: tells account holders about a change to their account or workspace
//! (see `moonengage_accounts::alerts`), so a change they did not make is noticed. The payload
//! holds ids only; the recipients' addresses are read when the job runs: the user for their own
//! account's events, the workspace's owners and the member for a new member or role, the owners
//! for maintenance access. Each recipient gets their own plain-text message saying what changed,
//! when, and what to do if it was not them — never a secret, an IP or a browser.
//!
//! A failed send retries the whole job (every kind is at-least-once): a recipient may then get
//! a message twice, never none. With no SMTP server configured the alert is dropped (logged at
//! debug), like admin e-mail.

use anyhow::Context as _;
use chrono::{DateTime, TimeZone as _, Utc};
use moonengage_accounts::alerts::AccountAlert;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;

/// What to do when a change was not the recipient's doing.
const NOT_YOU: &str = "If this was not you or someone you trust, change your password at once, \
                       revoke your API tokens and tell the workspace's owners.";

/// A token as its alert describes it: workspace, name, role, created, expires.
type TokenRow = (i64, String, String, DateTime<Utc>, DateTime<Utc>);

/// A grant as its alert describes it: operator, reason, expiry, revocation.
type GrantRow = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// One message to one address.
struct Letter {
    to: String,
    subject: String,
    body: String,
}

impl Run<Env> for AccountAlert {
    /// Alerts are rare; a few at once spares the SMTP server a burst.
    const CONCURRENCY: Option<usize> = Some(4);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        let Some(mailer) = &env.mailer else {
            tracing::debug!(
                alert = self.name(),
                "no SMTP server; account alert not sent"
            );
            return Ok(());
        };
        let letters = letters(&env.pool, &self, &env.public_base_url).await?;
        for letter in &letters {
            if let Err(error) = mailer
                .send_to(&letter.to, &letter.subject, letter.body.clone())
                .await
            {
                return Err(JobError::Retry {
                    after: None,
                    spend_attempt: true,
                    reason: format!("smtp: {error}"),
                });
            }
        }
        after_sent(&env.pool, &self).await?;
        tracing::info!(
            alert = self.name(),
            recipients = letters.len(),
            "account alert sent"
        );
        Ok(())
    }
}

/// A time as the e-mails show it.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time given in Unix milliseconds.
fn at_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| "an unknown time".to_owned(), when)
}

/// The address of a user, if they still exist.
async fn address_of(pool: &PgPool, user_id: i64) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
        .context("reading a user's address for an alert")
}

/// The addresses of a workspace's owners.
async fn owners_of(pool: &PgPool, workspace_id: i64) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 AND m.role = 'owner' ORDER BY u.id",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
    .context("reading a workspace's owners for an alert")
}

/// A workspace's name, or its id when it is gone.
async fn workspace_name(pool: &PgPool, workspace_id: i64) -> anyhow::Result<String> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
        .bind(workspace_id)
        .fetch_optional(pool)
        .await
        .context("reading a workspace's name for an alert")?;
    Ok(name.map_or_else(|| format!("#{workspace_id}"), |n| format!("\"{n}\"")))
}

/// Addresses to tell, each once, in order.
fn distinct(addresses: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for address in addresses {
        if !seen.contains(&address) {
            seen.push(address);
        }
    }
    seen
}

/// The same subject and body for every address.
fn to_each(addresses: Vec<String>, subject: String, body: &str) -> Vec<Letter> {
    distinct(addresses)
        .into_iter()
        .map(|to| Letter {
            to,
            subject: subject.clone(),
            body: body.to_owned(),
        })
        .collect()
}

/// The messages an alert sends, with what is read now.
async fn letters(pool: &PgPool, alert: &AccountAlert, base: &str) -> anyhow::Result<Vec<Letter>> {
    const TAG: &str = "[MoonEngage]";
    Ok(match *alert {
        AccountAlert::PasswordChanged { user_id, at_ms: at } => {
            let body = format!(
                "The password of your MoonEngage account was changed on {}.\n\n{NOT_YOU}\n",
                at_ms(at)
            );
            let to = address_of(pool, user_id).await?.into_iter().collect();
            to_each(to, format!("{TAG} Your password was changed"), &body)
        }
        AccountAlert::EmailChanged { user_id, at_ms: at } => {
            let body = format!(
                "The login e-mail of your MoonEngage account was changed on {}. From now on \
                 e-mail about the account goes to the new address only.\n\n{NOT_YOU}\n",
                at_ms(at)
            );
            let mut to = previous_addresses(pool, user_id, at).await?;
            to.extend(address_of(pool, user_id).await?);
            to_each(to, format!("{TAG} Your login e-mail was changed"), &body)
        }
        AccountAlert::TokenCreated { user_id, token_id } => {
            let token: Option<TokenRow> = sqlx::query_as(
                "SELECT workspace_id, name, role, created_at, expires_at FROM api_tokens
                     WHERE id = $1",
            )
            .bind(token_id)
            .fetch_optional(pool)
            .await
            .context("reading a token for an alert")?;
            let Some((workspace_id, name, role, created_at, expires_at)) = token else {
                return Ok(Vec::new());
            };
            let body = format!(
                "A personal API token was created for your account in workspace {} on {}.\n\n\
                 Token: #{token_id} \"{name}\"\nRole: {role}\nExpires: {}\n\n\
                 If this was not you, revoke it ({base}/api/v1/tokens/{token_id}, DELETE) and \
                 change your password. {NOT_YOU}\n",
                workspace_name(pool, workspace_id).await?,
                when(created_at),
                when(expires_at)
            );
            let to = address_of(pool, user_id).await?.into_iter().collect();
            to_each(to, format!("{TAG} A new API token for your account"), &body)
        }
        AccountAlert::MemberAdded {
            workspace_id,
            user_id,
        }
        | AccountAlert::RoleChanged {
            workspace_id,
            user_id,
            ..
        } => {
            let member: Option<(String, String)> = sqlx::query_as(
                "SELECT u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.workspace_id = $1 AND m.user_id = $2",
            )
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await
            .context("reading a membership for an alert")?;
            let Some((address, role)) = member else {
                return Ok(Vec::new());
            };
            let name = workspace_name(pool, workspace_id).await?;
            let (subject, what) = match alert {
                AccountAlert::RoleChanged { at_ms: at, .. } => (
                    format!("{TAG} A role changed in workspace {name}"),
                    format!("On {}, the role of {address} became {role}", at_ms(*at)),
                ),
                _ => (
                    format!("{TAG} A new member in workspace {name}"),
                    format!("{address} joined as {role}"),
                ),
            };
            let body = format!("{what} in MoonEngage workspace {name}.\n\n{NOT_YOU}\n");
            let mut to = owners_of(pool, workspace_id).await?;
            to.push(address);
            to_each(to, subject, &body)
        }
        AccountAlert::NewOrigin { user_id, at_ms: at } => {
            let body = format!(
                "Your MoonEngage account was logged in to on {} from a network or browser not \
                 seen before. Your account activity in the console shows it.\n\n{NOT_YOU}\n",
                at_ms(at)
            );
            let to = address_of(pool, user_id).await?.into_iter().collect();
            to_each(to, format!("{TAG} A login from a new place"), &body)
        }
        AccountAlert::MaintenanceGranted {
            workspace_id,
            grant_id,
        }
        | AccountAlert::MaintenanceUsed {
            workspace_id,
            grant_id,
        }
        | AccountAlert::MaintenanceEnded {
            workspace_id,
            grant_id,
        } => {
            let name = workspace_name(pool, workspace_id).await?;
            let (subject, body) = maintenance(pool, alert, &name, grant_id).await?;
            to_each(owners_of(pool, workspace_id).await?, subject, &body)
        }
    })
}

/// Subject and body of a maintenance alert.
async fn maintenance(
    pool: &PgPool,
    alert: &AccountAlert,
    workspace: &str,
    grant_id: i64,
) -> anyhow::Result<(String, String)> {
    const TAG: &str = "[MoonEngage]";
    let grant: Option<GrantRow> = sqlx::query_as(
        "SELECT u.email, g.reason, g.expires_at, g.revoked_at
         FROM maintenance_grants g JOIN users u ON u.id = g.operator_id WHERE g.id = $1",
    )
    .bind(grant_id)
    .fetch_optional(pool)
    .await
    .context("reading a maintenance grant for an alert")?;
    let details = grant.map_or_else(String::new, |(operator, reason, expires, revoked)| {
        let end = revoked.map_or_else(
            || format!("Ends: {}", when(expires)),
            |at| format!("Revoked: {}", when(at)),
        );
        format!("\nOperator: {operator}\nReason: {reason}\n{end}\n")
    });
    let (subject, what) = match alert {
        AccountAlert::MaintenanceGranted { .. } => (
            format!("{TAG} Maintenance access granted to workspace {workspace}"),
            "An owner granted a MoonEngage operator time-limited maintenance access",
        ),
        AccountAlert::MaintenanceUsed { .. } => (
            format!("{TAG} Maintenance access used in workspace {workspace}"),
            "A MoonEngage operator started using maintenance access (every use is in your \
             account activity)",
        ),
        _ => (
            format!("{TAG} Maintenance access ended in workspace {workspace}"),
            "Maintenance access ran out or was revoked; the operator's token no longer works",
        ),
    };
    let body = format!(
        "{what} to workspace {workspace} (grant #{grant_id}).\n{details}\n\
         An owner can revoke a grant at any time (DELETE /api/v1/maintenance/{grant_id}).\n"
    );
    Ok((subject, body))
}

/// Addresses a user's login had before the changes up to `at_ms` (kept only until their
/// alert is sent, see [`after_sent`]).
async fn previous_addresses(
    pool: &PgPool,
    user_id: i64,
    at_ms: i64,
) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT old_email FROM email_changes
         WHERE user_id = $1 AND changed_at <= to_timestamp($2 / 1000.0) ORDER BY id",
    )
    .bind(user_id)
    .bind(at_ms)
    .fetch_all(pool)
    .await
    .context("reading previous addresses for an alert")
}

/// Forgets what was kept only for this alert: the previous addresses of an e-mail change.
async fn after_sent(pool: &PgPool, alert: &AccountAlert) -> anyhow::Result<()> {
    if let AccountAlert::EmailChanged { user_id, at_ms } = *alert {
        sqlx::query(
            "DELETE FROM email_changes
             WHERE user_id = $1 AND changed_at <= to_timestamp($2 / 1000.0)",
        )
        .bind(user_id)
        .bind(at_ms)
        .execute(pool)
        .await
        .context("forgetting previous addresses")?;
    }
    Ok(())
}
