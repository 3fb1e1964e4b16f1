//! The SMTP mailer (lettre over tokio, TLS by rustls) of admin alerts and of account holders'
//! e-mail (alerts on account changes, invitations): only the worker sends e-mail, so only it
//! links an SMTP client.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use moonengage_core::settings::{EmailSettings, SmtpTls};
use secrecy::ExposeSecret;

/// Why an e-mail was not sent; every case is retried by the e-mail job.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// The message could not be built (an address that does not parse).
    #[error("building the message: {0}")]
    Build(String),
    /// The SMTP server could not be reached or refused the message.
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Sends plain-text e-mail to the configured admins or to one account holder, one SMTP
/// connection per message.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
    admins: Vec<String>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("admins", &self.admins.len())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Prepares the transport; `None` when no SMTP server is configured.
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Option<Mailer>> {
        if settings.smtp_url.is_empty() {
            return Ok(None);
        }
        let endpoint = settings
            .endpoint()
            .map_err(|e| anyhow::anyhow!("invalid setting `{}`: {e}", e.key))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(TlsParameters::new(endpoint.host.clone())?),
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(endpoint.host.clone())?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.as_str())
                .port(endpoint.port)
                .tls(tls)
                .timeout(Some(Duration::from_millis(settings.timeout_ms)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(
                user.expose_secret().to_owned(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from: settings.from.clone(),
            admins: settings.admins.clone(),
        }))
    }

    /// Whether admin e-mail is on (somebody is listed in `email.admins`).
    pub fn has_admins(&self) -> bool {
        !self.admins.is_empty()
    }

    /// Sends one message to every admin.
    pub async fn send(&self, subject: &str, body: String) -> Result<(), EmailError> {
        self.deliver(&self.admins, subject, body).await
    }

    /// Sends one message to one account holder (each recipient gets their own, so nobody sees
    /// another's address).
    pub async fn send_to(&self, to: &str, subject: &str, body: String) -> Result<(), EmailError> {
        self.deliver(std::slice::from_ref(&to.to_owned()), subject, body)
            .await
    }

    /// Builds and sends one message. A build error names no address (it would be logged).
    async fn deliver(&self, to: &[String], subject: &str, body: String) -> Result<(), EmailError> {
        let build = |what: &str| EmailError::Build(format!("{what} does not parse"));
        let mut message = Message::builder()
            .from(self.from.parse().map_err(|_| build("the sender"))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for address in to {
            message = message.to(address.parse().map_err(|_| build("a recipient"))?);
        }
        let message = message.body(body).map_err(|_| build("the body"))?;
        self.transport.send(message).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_server_there_is_no_mailer() {
        let off = EmailSettings {
            smtp_url: String::new(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "MoonEngage <noreply@example.com>".into(),
            admins: vec![],
            timeout_ms: 1000,
            dsr_due_check_secs: 300,
            dsr_due_within_days: 5,
            incident_deadline_within_hours: 24,
        };
        assert!(Mailer::new(&off).unwrap().is_none());
    }
}
