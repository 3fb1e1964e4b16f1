//! Leadership through a Postgres session advisory lock held on a dedicated connection: exactly
//! one scheduler works, and when its process or connection dies the lock is released and a
//! standby takes over on its next tick.

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

use moonengage_core::settings::DatabaseSettings;

/// The advisory lock key of the scheduler leader ("MESCHEDU").
const LEADER_LOCK: i64 = 0x4d45_5343_4845_4455;

/// This process's claim to leadership.
pub struct Leader {
    url: SecretString,
    conn: Option<PgConnection>,
    held: bool,
}

impl Leader {
    /// A standby that has not tried to lead yet.
    pub fn new(settings: &DatabaseSettings) -> Leader {
        Leader {
            url: settings.session_url().clone(),
            conn: None,
            held: false,
        }
    }

    /// Whether this process leads, checked against the database each time: a lost connection
    /// means the lock is gone too, so leadership is given up at once.
    pub async fn ensure(&mut self) -> anyhow::Result<bool> {
        if let Some(conn) = self.conn.as_mut()
            && conn.ping().await.is_err()
        {
            if self.held {
                tracing::warn!("lost the leader connection; standing by");
            }
            self.conn = None;
            self.held = false;
        }
        if self.held {
            return Ok(true);
        }
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => self.conn.insert(
                PgConnection::connect(self.url.expose_secret())
                    .await
                    .context("connecting for the leader lock")?,
            ),
        };
        self.held = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(conn)
            .await
            .context("taking the leader lock")?;
        if self.held {
            tracing::info!("became the scheduler leader");
        }
        Ok(self.held)
    }
}
