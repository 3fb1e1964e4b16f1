//! Settings of every process, layered: `config/default.toml`, then `config/{APP_ENV}.toml`, then
//! `MOONENGAGE__SECTION__KEY` environment variables, then the platform's `DATABASE_URL`,
//! `REDIS_URL` and `PORT`. A missing or invalid setting fails at start with its key named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde::Deserialize;

mod email;
mod sections;

pub use email::{EmailSettings, EmailSettingsError, Endpoint, SmtpTls};
pub use moonengage_accounts::AccountsSettings;
pub use moonengage_messenger::limiter::RateLimitSettings;
pub use moonengage_messenger::settings::{MessengerSettings, RedisSettings};
pub use moonengage_messenger::webhook::KeywordSettings;
pub use moonengage_ops::metrics::MetricsSettings;
pub use moonengage_privacy::PrivacySettings;
pub use moonengage_privacy::crypto::CryptoSettings;
pub use moonengage_privacy::unsubscribe::UnsubscribeSettings;
pub use moonengage_queue::QueueSettings;
pub use sections::{
    AppSettings, DatabaseSettings, RetentionSettings, SchedulerSettings, WebSettings,
    WorkerSettings,
};

/// Why settings could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read or a value has the wrong shape (the message names the key).
    #[error("configuration error: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but breaks a rule.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `database.url`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Every setting of the system; each process reads the sections it needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Environment and identity of the deployment.
    pub app: AppSettings,
    /// Postgres: the queue and the application's data.
    pub database: DatabaseSettings,
    /// Redis: the shared per-Page rate limiter.
    pub redis: RedisSettings,
    /// The web process's listener.
    pub web: WebSettings,
    /// The Graph API (Facebook, or the sandbox in dev and tests).
    pub messenger: MessengerSettings,
    /// Keys for encryption at rest and blind indexes.
    pub crypto: CryptoSettings,
    /// Keys that sign the unsubscribe token of every message.
    pub unsubscribe: UnsubscribeSettings,
    /// Words a person sends to unsubscribe or to ask for their data.
    pub keywords: KeywordSettings,
    /// How workers fetch from the Postgres queue.
    pub queue: QueueSettings,
    /// Worker process behaviour.
    pub worker: WorkerSettings,
    /// Scheduler process behaviour.
    pub scheduler: SchedulerSettings,
    /// Per-Page send rate limiting.
    pub rate_limit: RateLimitSettings,
    /// Where worker and scheduler serve `/metrics`, and how fresh the database gauges are.
    pub metrics: MetricsSettings,
    /// Admin notifications by e-mail (SMTP).
    pub email: EmailSettings,
    /// Data-subject requests: how long an export's download link works.
    pub privacy: PrivacySettings,
    /// What the scheduler leader deletes, and after how long.
    pub retention: RetentionSettings,
    /// Account holders' logins, tokens, links and activity.
    pub accounts: AccountsSettings,
}

impl Settings {
    /// Loads from `MOONENGAGE_CONFIG_DIR` (default `./config`) and the environment.
    pub fn load() -> Result<Settings, SettingsError> {
        let dir = std::env::var_os("MOONENGAGE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir)
    }

    /// Loads from a given folder of TOML files and the environment.
    pub fn load_from(dir: &Path) -> Result<Settings, SettingsError> {
        Self::load_with_env(dir, &std::env::vars().collect())
    }

    /// Loads from a given folder of TOML files and the given environment variables instead of
    /// the process's, so every layer can be exercised without touching the process environment.
    pub fn load_with_env(
        dir: &Path,
        vars: &HashMap<String, String>,
    ) -> Result<Settings, SettingsError> {
        let env = vars
            .get("APP_ENV")
            .cloned()
            .unwrap_or_else(|| "local".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("MOONENGAGE")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("crypto.age_identities")
                    .with_list_parse_key("crypto.age_recipients")
                    .with_list_parse_key("keywords.stop")
                    .with_list_parse_key("keywords.start")
                    .with_list_parse_key("keywords.export")
                    .with_list_parse_key("keywords.erase")
                    .with_list_parse_key("email.admins")
                    .try_parsing(true)
                    .source(Some(vars.clone().into_iter().collect())),
            )
            .set_override("app.env", env)?;
        for (var, key) in [("DATABASE_URL", "database.url"), ("REDIS_URL", "redis.url")] {
            if let Some(value) = vars.get(var) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        if let Some(port) = vars.get("PORT") {
            let port: u16 = port.parse().map_err(|_| SettingsError::Invalid {
                key: "PORT",
                reason: format!("`{port}` is not a port number"),
            })?;
            builder = builder
                .set_override("web.port", port)?
                .set_override("metrics.port", port)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, reason: &str| SettingsError::Invalid {
            key,
            reason: reason.into(),
        };
        if self.database.url.expose_secret().is_empty() {
            return Err(invalid("database.url", "must be set"));
        }
        if self.app.is_production() && !self.messenger.base_url.starts_with("https://") {
            return Err(invalid(
                "messenger.base_url",
                "must be https:// in production",
            ));
        }
        if self.messenger.app_id.trim().is_empty() {
            return Err(invalid("messenger.app_id", "must be set"));
        }
        if self.messenger.app_secret.expose_secret().is_empty() {
            return Err(invalid("messenger.app_secret", "must be set"));
        }
        if self.messenger.verify_token.expose_secret().is_empty() {
            return Err(invalid("messenger.verify_token", "must be set"));
        }
        self.validate_web()?;
        if self.privacy.export_ttl_days == 0 {
            return Err(invalid("privacy.export_ttl_days", "must be at least 1"));
        }
        if let Some(key) = self.keywords.first_empty_list() {
            return Err(invalid(key, "must list at least one keyword"));
        }
        if self.queue.batch_size == 0 {
            return Err(invalid("queue.batch_size", "must be at least 1"));
        }
        if self.worker.concurrency == 0 {
            return Err(invalid("worker.concurrency", "must be at least 1"));
        }
        for (key, ms) in [
            ("scheduler.tick_ms", self.scheduler.tick_ms),
            ("scheduler.fanout_ms", self.scheduler.fanout_ms),
            ("scheduler.completion_ms", self.scheduler.completion_ms),
            ("metrics.refresh_ms", self.metrics.refresh_ms),
        ] {
            if ms == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.scheduler.fanout_batch <= 0 {
            return Err(invalid("scheduler.fanout_batch", "must be at least 1"));
        }
        if self.retention.interval_ms == 0 {
            return Err(invalid("retention.interval_ms", "must be at least 1"));
        }
        if self.retention.deliveries_days == 0 {
            return Err(invalid(
                "retention.deliveries_days",
                "must be at least 1, so a campaign's outcomes can be looked at",
            ));
        }
        if self.retention.inactive_subscriber_days == 0 {
            return Err(invalid(
                "retention.inactive_subscriber_days",
                "must be at least 1",
            ));
        }
        if self.retention.unsubscribed_days == 0 {
            return Err(invalid("retention.unsubscribed_days", "must be at least 1"));
        }
        self.crypto.validate().map_err(|e| SettingsError::Invalid {
            key: e.key(),
            reason: e.to_string(),
        })?;
        self.unsubscribe
            .validate()
            .map_err(|e| SettingsError::Invalid {
                key: e.key(),
                reason: e.to_string(),
            })?;
        self.email
            .validate(self.app.is_production())
            .map_err(|e| SettingsError::Invalid {
                key: e.key,
                reason: e.reason,
            })?;
        Ok(())
    }
}

impl Settings {
    /// The `web` rules: TLS needs both files, limits must be positive, the base URL absolute.
    fn validate_web(&self) -> Result<(), SettingsError> {
        let invalid = |key, reason: &str| SettingsError::Invalid {
            key,
            reason: reason.into(),
        };
        let web = &self.web;
        match (&web.tls_cert_path, &web.tls_key_path) {
            (Some(_), None) => {
                return Err(invalid("web.tls_key_path", "needed with a certificate"));
            }
            (None, Some(_)) => return Err(invalid("web.tls_cert_path", "needed with a key")),
            _ => {}
        }
        if web.max_body_bytes == 0 {
            return Err(invalid("web.max_body_bytes", "must be at least 1"));
        }
        if web.max_import_bytes == 0 {
            return Err(invalid("web.max_import_bytes", "must be at least 1"));
        }
        if web.request_timeout_secs == 0 {
            return Err(invalid("web.request_timeout_secs", "must be at least 1"));
        }
        if let Some(url) = &web.public_base_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("web.public_base_url", "must start with https://"));
        }
        if self.app.is_production() {
            if !web
                .public_base_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
            {
                return Err(invalid(
                    "web.public_base_url",
                    "must be set to an https:// URL in production: every link sent to people \
                     (unsubscribe, export, deletion status) points there",
                ));
            }
            if let Some(url) = &self.unsubscribe.base_url
                && !url.starts_with("https://")
            {
                return Err(invalid(
                    "unsubscribe.base_url",
                    "must be an https:// URL in production",
                ));
            }
        }
        Ok(())
    }

    /// Where every link we send points (export downloads, the deletion status page, admin
    /// e-mails), without a trailing slash: `web.public_base_url`, else `unsubscribe.base_url`.
    /// Production cannot start without an https one; a local run without either links to its
    /// own port on localhost, never to the interface it binds (`0.0.0.0` is no address).
    pub fn public_base_url(&self) -> String {
        self.configured_public_base_url()
            .unwrap_or_else(|| format!("http://localhost:{}", self.web.port))
    }

    /// [`Settings::public_base_url`] when a setting gives one, `None` on a local run without
    /// either: the HTTPS redirect then keeps the request's own host.
    pub fn configured_public_base_url(&self) -> Option<String> {
        self.web
            .public_base_url
            .as_deref()
            .or(self.unsubscribe.base_url.as_deref())
            .map(|url| url.trim_end_matches('/').to_owned())
    }

    /// The `/u/{token}` link a message carries when `unsubscribe.base_url` asks for one (else
    /// only the quick reply unsubscribes); it points, like every link, at
    /// [`Settings::public_base_url`].
    pub fn unsubscribe_link(&self, token: &str) -> Option<String> {
        self.unsubscribe
            .base_url
            .as_ref()
            .map(|_| format!("{}/u/{token}", self.public_base_url()))
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests {
    use super::*;

    fn repository_settings() -> Settings {
        Settings::load_from(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config"))
            .expect("the repository's settings")
    }

    #[test]
    fn every_link_points_at_the_public_base_url() {
        let mut settings = repository_settings();
        settings.web.public_base_url = None;
        settings.unsubscribe.base_url = None;
        assert_eq!(settings.configured_public_base_url(), None);
        assert_eq!(
            settings.unsubscribe_link("t"),
            None,
            "no link unless asked for"
        );

        settings.unsubscribe.base_url = Some("https://old.example.com/".into());
        assert_eq!(
            settings.unsubscribe_link("t").as_deref(),
            Some("https://old.example.com/u/t")
        );

        settings.web.public_base_url = Some("https://engage.example.com/".into());
        assert_eq!(settings.public_base_url(), "https://engage.example.com");
        assert_eq!(
            settings.unsubscribe_link("t").as_deref(),
            Some("https://engage.example.com/u/t")
        );
    }
}
