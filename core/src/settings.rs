//! Settings of every process, layered: `config/default.toml`, then `config/{APP_ENV}.toml`, then
//! `MOONENGAGE__SECTION__KEY` environment variables, then the platform's `DATABASE_URL`,
//! `REDIS_URL` and `PORT`. A missing or invalid setting fails at start with its key named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::crypto::CryptoSettings;
use crate::email::EmailSettings;
use crate::privacy::PrivacySettings;
use crate::rate_limit::RateLimitSettings;
use crate::unsubscribe::UnsubscribeSettings;
use crate::webhook::KeywordSettings;
pub use moonengage_queue::QueueSettings;

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
}

/// Which deployment this is; decides defaults such as JSON logs and the HTTPS requirement.
#[derive(Debug, Clone, Deserialize)]
pub struct AppSettings {
    /// `local`, `test` or `production`.
    pub env: String,
}

impl AppSettings {
    /// Production refuses plain-HTTP outbound calls and logs JSON.
    pub fn is_production(&self) -> bool {
        self.env == "production"
    }
}

/// Connection to Postgres.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Connection URL; it may carry a password, so it stays secret.
    pub url: SecretString,
    /// Upper bound of the pool of each process.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout_secs: u64,
}

/// Connection to Redis; absent means every worker limits its own rate in-process.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Connection URL, or none.
    pub url: Option<SecretString>,
    /// Prefix of every key, so deployments (and tests) sharing a Redis do not collide.
    pub key_prefix: String,
    /// Connect and response timeout: a slow Redis must not stall sends.
    pub timeout_ms: u64,
}

/// Where the web process listens and how it protects itself.
#[derive(Debug, Clone, Deserialize)]
pub struct WebSettings {
    /// Interface to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Behind a proxy: redirect a request the proxy marks `X-Forwarded-Proto: http` to HTTPS,
    /// and send HSTS on the others.
    #[serde(default)]
    pub require_https: bool,
    /// PEM certificate chain; with `tls_key_path`, the web process terminates TLS itself.
    #[serde(default)]
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key of `tls_cert_path`.
    #[serde(default)]
    pub tls_key_path: Option<PathBuf>,
    /// Largest webhook body accepted; Facebook's batches are far below the default.
    pub max_body_bytes: usize,
    /// Largest subscriber import accepted by the admin API.
    pub max_import_bytes: usize,
    /// A request still unanswered after this long is answered with an error, so a slow client
    /// or a stuck query cannot hold a connection forever.
    pub request_timeout_secs: u64,
    /// Public URL of this process (e.g. `https://engage.example.com`): where every link we
    /// send points and where the HTTPS redirect goes. Production refuses to start without an
    /// `https://` one; elsewhere none means `http://localhost:{port}`.
    #[serde(default)]
    pub public_base_url: Option<String>,
}

impl WebSettings {
    /// Whether the process serves HTTPS itself.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls_cert_path
            .as_deref()
            .zip(self.tls_key_path.as_deref())
    }

    /// Budget of one request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// The Graph API endpoint and the app's secrets.
#[derive(Debug, Clone, Deserialize)]
pub struct MessengerSettings {
    /// `https://graph.facebook.com` in production, the sandbox elsewhere.
    pub base_url: String,
    /// Graph API version, e.g. `v21.0`.
    pub api_version: String,
    /// Time allowed to establish a connection; failing here is always safe to retry.
    pub connect_timeout_ms: u64,
    /// Time allowed for a whole call; past it a send is ambiguous and never repeated.
    pub request_timeout_ms: u64,
    /// The Facebook app's id: with the secret, the app access token of the ID Matching API
    /// (the data-deletion callback names people by app-scoped ids).
    pub app_id: String,
    /// Signs webhooks and the data-deletion callback.
    pub app_secret: SecretString,
    /// Answers Facebook's webhook verification handshake.
    pub verify_token: SecretString,
}

/// Worker process behaviour.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Jobs run at once per worker process.
    pub concurrency: usize,
    /// On SIGTERM, how long in-flight sends may take to finish.
    pub shutdown_timeout_secs: u64,
}

/// Scheduler process behaviour.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerSettings {
    /// How often a scheduler checks that it (still) holds the leader lock: a standby takes over
    /// within this, and a leader that lost the lock stops its services within this.
    pub tick_ms: u64,
    /// How often the leader starts due campaigns and fans running ones out.
    pub fanout_ms: u64,
    /// How often the leader folds outcome counts into campaigns and completes finished ones.
    pub completion_ms: u64,
    /// Recipients turned into jobs per fan-out statement.
    pub fanout_batch: i64,
    /// Give each job a run time paced at its Page's send rate, so Pages interleave in the queue
    /// and a huge campaign cannot starve a small one of another Page.
    pub pace_fanout: bool,
}

/// Retention (docs/architecture.md, "Privacy"), enforced by the scheduler leader in bounded
/// batches.
/// Data nobody needs any more is deleted rather than kept "just in case".
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// How often the leader applies retention. Each pass deletes in bounded batches, and passes
    /// follow one another while a backlog remains; a minute keeps the cost negligible.
    pub interval_ms: u64,
    /// Jobs failed for good are kept this long, for inspection (a job that succeeds is deleted
    /// at once). They hold ids only.
    pub finished_jobs_secs: u64,
    /// A processed webhook event has had its sender erased by its job; what remains (a hash of
    /// the message id) is kept this long so a redelivery of the event is recognised, then
    /// deleted. Events whose job failed for good go after this long too.
    pub webhook_events_secs: u64,
    /// Delivery rows of a campaign that ended (completed or cancelled) are deleted this many
    /// days after it ended; the campaign keeps its totals.
    pub deliveries_days: u32,
    /// A subscriber who has not written to the Page for this many days (so no campaign can
    /// reach them) is deleted with everything about them.
    pub inactive_subscriber_days: u32,
    /// An unsubscribed person is deleted this many days after they unsubscribed (or last wrote,
    /// if later); only the blind index of their PSID stays, so a re-import or a new opt-in of
    /// theirs stays unsubscribed.
    pub unsubscribed_days: u32,
}

impl RetentionSettings {
    /// Time between retention passes.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// The `/metrics` listener of worker and scheduler (web serves `/metrics` on its own port). A
/// Procfile runner gives every process its own `PORT`, which is used here; without one, `port`
/// applies, and 0 (the default) serves nothing, since N workers on one machine cannot share a
/// fixed port.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Interface to bind.
    pub host: String,
    /// Port to bind; 0 means no listener.
    pub port: u16,
    /// How often the scheduler leader recomputes the gauges read from Postgres (queue depth,
    /// oldest job, campaign progress, open data-subject requests): each is a few aggregate
    /// queries, cheap but not free on a large queue.
    pub refresh_ms: u64,
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
        let env = std::env::var("APP_ENV").unwrap_or_else(|_| "local".into());
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
                    .try_parsing(true),
            )
            .set_override("app.env", env)?;
        for (var, key) in [("DATABASE_URL", "database.url"), ("REDIS_URL", "redis.url")] {
            if let Ok(value) = std::env::var(var) {
                builder = builder.set_override(key, value)?;
            }
        }
        if let Ok(port) = std::env::var("PORT") {
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
        self.web
            .public_base_url
            .as_deref()
            .or(self.unsubscribe.base_url.as_deref())
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://localhost:{}", self.web.port))
    }
}

impl MessengerSettings {
    /// Budget for a whole Send API call.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
