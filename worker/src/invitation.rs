//! The invitation job: e-mails an invitee the link to join a workspace (or, for a new account,
//! to choose a password). The link's secret is minted here, when the e-mail is written, and
//! only its hash is stored (see `moonengage_accounts::invitations`): nothing secret is queued,
//! and a retried e-mail carries a fresh link that replaces the earlier one.

use moonengage_accounts::invitations::{self, InvitationJob};
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use secrecy::ExposeSecret;

use crate::env::Env;

impl Run<Env> for InvitationJob {
    /// Invitations are rare; a few at once spares the SMTP server a burst.
    const CONCURRENCY: Option<usize> = Some(4);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        let Some(mailer) = &env.mailer else {
            tracing::debug!(
                invitation_id = self.invitation_id,
                "no SMTP server; not sent"
            );
            return Ok(());
        };
        let Some(link) = invitations::mint_link(&env.pool, self.invitation_id).await? else {
            tracing::debug!(
                invitation_id = self.invitation_id,
                "invitation no longer pending"
            );
            return Ok(());
        };
        let url = format!(
            "{}/console/invitations/{}",
            env.public_base_url,
            link.secret.expose_secret()
        );
        let what = if link.new_user {
            "Open the link to choose your password (at least 12 characters; a long passphrase \
             is best) and join"
        } else {
            "Open the link and confirm with your password to join"
        };
        let body = format!(
            "You are invited to the MoonEngage workspace \"{}\" as {}.\n\n{what}:\n\n{url}\n\n\
             The link works once, until {}. If you did not expect this, ignore this e-mail: \
             nothing happens unless the link is used.\n",
            link.workspace,
            link.role,
            link.expires_at.format("%Y-%m-%d %H:%M UTC"),
        );
        let subject = format!("[MoonEngage] Join workspace \"{}\"", link.workspace);
        if let Err(error) = mailer.send_to(&link.email, &subject, body).await {
            return Err(JobError::Retry {
                after: None,
                spend_attempt: true,
                reason: format!("smtp: {error}"),
            });
        }
        tracing::info!(invitation_id = self.invitation_id, "invitation e-mail sent");
        Ok(())
    }
}
