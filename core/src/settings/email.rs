//! The `[email]` settings: where admin alerts go and the SMTP server that carries them (the
//! worker's mailer sends them). People who subscribe to a Page are never e-mailed — we hold no
//! address of theirs; they are told things through Messenger.

use lettre::message::Mailbox;
use secrecy::SecretString;
use serde::Deserialize;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a local test server, refused in production.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (no silent downgrade).
    Starttls,
    /// TLS from the first byte (`smtps://`, usually port 465).
    Tls,
}

/// The `[email]` section: where admin notifications go and how e-mail is sent. With no `admins`
/// listed, admin e-mail is off (jobs are still queued and finish without sending); account
/// holders' e-mail (alerts, invitations, cancellation) goes whenever `smtp_url` is set.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    /// `smtp://host:port` or `smtps://host:port`; credentials go in `username`/`password`, never
    /// in the URL (the URL is printed by `Debug`).
    pub smtp_url: String,
    /// `none`, `starttls` or `tls`; production refuses `none`.
    pub tls: SmtpTls,
    /// SMTP login, when the server wants one.
    #[serde(default)]
    pub username: Option<SecretString>,
    /// SMTP password, with `username`.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// The sender, e.g. `MoonEngage <noreply@example.com>`.
    pub from: String,
    /// Who receives admin notifications.
    pub admins: Vec<String>,
    /// Budget of one SMTP conversation; past it the e-mail is retried later.
    pub timeout_ms: u64,
    /// How often the scheduler leader looks for data-subject requests close to their deadline.
    pub dsr_due_check_secs: u64,
    /// A request this many days from its deadline is announced to admins (once).
    pub dsr_due_within_days: i32,
    /// An open incident whose 72 hours to inform the authority end within this many hours is
    /// announced to admins (once), by the same check.
    pub incident_deadline_within_hours: i32,
}

/// A rule of `[email]` that a value breaks; `key` names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct EmailSettingsError {
    /// The dotted key, e.g. `email.tls`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Where to connect, parsed from `smtp_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The server's name, also what its TLS certificate must be for.
    pub host: String,
    /// The port, 465 or 587 when the URL names none.
    pub port: u16,
}

impl EmailSettings {
    /// Checks what types cannot: a parsable URL that agrees with `tls`, TLS in production,
    /// addresses that parse, credentials given in pairs.
    pub fn validate(&self, production: bool) -> Result<(), EmailSettingsError> {
        let invalid = |key, reason: &str| EmailSettingsError {
            key,
            reason: reason.into(),
        };
        if self.admins.is_empty() {
            return Ok(());
        }
        self.endpoint()?;
        if production && self.tls == SmtpTls::None {
            return Err(invalid(
                "email.tls",
                "must be `starttls` or `tls` in production (plain SMTP exposes the credentials)",
            ));
        }
        if self.from.parse::<Mailbox>().is_err() {
            return Err(invalid("email.from", "must be an e-mail address"));
        }
        if self.admins.iter().any(|a| a.parse::<Mailbox>().is_err()) {
            return Err(invalid("email.admins", "must list e-mail addresses"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "email.password",
                "username and password go together",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("email.timeout_ms", "must be at least 1"));
        }
        if !(1..=72).contains(&self.incident_deadline_within_hours) {
            return Err(invalid(
                "email.incident_deadline_within_hours",
                "must be between 1 and 72",
            ));
        }
        if self.dsr_due_check_secs == 0 {
            return Err(invalid("email.dsr_due_check_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// Host and port of `smtp_url`, which must agree with `tls` (`smtps://` is `tls`).
    pub fn endpoint(&self) -> Result<Endpoint, EmailSettingsError> {
        let invalid = |reason: &str| EmailSettingsError {
            key: "email.smtp_url",
            reason: reason.into(),
        };
        let (rest, wrapped) = if let Some(rest) = self.smtp_url.strip_prefix("smtps://") {
            (rest, true)
        } else if let Some(rest) = self.smtp_url.strip_prefix("smtp://") {
            (rest, false)
        } else {
            return Err(invalid("must start with smtp:// or smtps://"));
        };
        if wrapped != (self.tls == SmtpTls::Tls) {
            return Err(EmailSettingsError {
                key: "email.tls",
                reason: "`tls` goes with smtps://, `none` and `starttls` with smtp://".into(),
            });
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains('@') {
            return Err(invalid(
                "must not carry credentials (use email.username and email.password)",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| invalid("has an invalid port"))?,
            ),
            None => (authority, if wrapped { 465 } else { 587 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("must be smtp://host:port"));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, tls: SmtpTls) -> EmailSettings {
        EmailSettings {
            smtp_url: url.into(),
            tls,
            username: None,
            password: None,
            from: "MoonEngage <noreply@example.com>".into(),
            admins: vec!["ops@example.com".into()],
            timeout_ms: 1000,
            dsr_due_check_secs: 300,
            dsr_due_within_days: 5,
            incident_deadline_within_hours: 24,
        }
    }

    #[test]
    fn production_refuses_plain_smtp_and_names_the_key() {
        let plain = settings("smtp://127.0.0.1:2525", SmtpTls::None);
        assert!(plain.validate(false).is_ok());
        assert_eq!(plain.validate(true).unwrap_err().key, "email.tls");
        let starttls = settings("smtp://mail.example.com:587", SmtpTls::Starttls);
        assert!(starttls.validate(true).is_ok());
        let wrapped = settings("smtps://mail.example.com", SmtpTls::Tls);
        assert!(wrapped.validate(true).is_ok());
        assert_eq!(wrapped.endpoint().unwrap().port, 465);
    }

    #[test]
    fn urls_that_disagree_with_tls_or_carry_credentials_are_refused() {
        let mismatch = settings("smtps://mail.example.com", SmtpTls::Starttls);
        assert_eq!(mismatch.validate(false).unwrap_err().key, "email.tls");
        let creds = settings("smtp://me:pw@mail.example.com:25", SmtpTls::Starttls);
        assert_eq!(creds.validate(false).unwrap_err().key, "email.smtp_url");
        let scheme = settings("http://mail.example.com", SmtpTls::None);
        assert_eq!(scheme.validate(false).unwrap_err().key, "email.smtp_url");
    }

    #[test]
    fn without_admins_and_a_server_email_is_not_checked() {
        let mut off = settings("", SmtpTls::None);
        off.admins.clear();
        assert!(off.validate(true).is_ok());
    }
}
