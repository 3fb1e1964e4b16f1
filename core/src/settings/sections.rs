//! The sections of the settings that belong to no other crate: the deployment, the database,
//! the web listener and the worker and scheduler processes, and retention.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

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
    /// Where connections that need a session go: the scheduler's leader lock (a session
    /// advisory lock) and the workers' `LISTEN`. Unset, they use `url`. Behind PgBouncer in
    /// transaction mode, point `url` at PgBouncer and this at Postgres itself.
    #[serde(default)]
    pub session_url: Option<SecretString>,
    /// `url` points at a pooler in transaction mode (PgBouncer `pool_mode = transaction`)
    /// that does not track prepared statements (PgBouncer before 1.21, Debian 12's 1.18).
    /// sqlx prepares a statement and executes it in two round trips, between which such a
    /// pooler may hand the client another server; so each checkout of a pooled connection
    /// runs in one transaction (which pins its server), starts by dropping whatever prepared
    /// statements the server has, and caches none. See `db::connect`.
    #[serde(default)]
    pub transaction_pooler: bool,
}

impl DatabaseSettings {
    /// The URL for connections that need a session (see `session_url`).
    pub fn session_url(&self) -> &SecretString {
        self.session_url.as_ref().unwrap_or(&self.url)
    }

    /// These settings for a one-shot process (the command line): Postgres itself, through
    /// `session_url`, without the pooler's checkout transactions. Behind a pooler a checkout's
    /// writes commit only when its connection comes back to the pool, which a process that
    /// exits right after its last statement may never see: its migration or new workspace would
    /// be rolled back.
    pub fn direct(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.session_url().clone(),
            transaction_pooler: false,
            ..self.clone()
        }
    }
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
    /// Behind a proxy that appends the client's address to `X-Forwarded-For`: take the
    /// client's origin (for account activity and the login limit) from its last entry instead
    /// of the connection's peer. Off by default, since any client can send the header.
    #[serde(default)]
    pub trust_forwarded_for: bool,
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
/// batches. Data nobody needs any more is deleted rather than kept "just in case".
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
    /// Account holders' security events (logins, changes, with a coarse origin) are kept this
    /// many days for them to see, then deleted; the privacy page states it.
    pub account_activity_days: u32,
}

impl RetentionSettings {
    /// Time between retention passes.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}
