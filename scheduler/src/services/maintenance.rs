//! The maintenance-expiry service: a maintenance grant that ran out is told to the workspace's
//! owners, once (the grant records that it was, in the transaction that queues the e-mail).
//! Runs every `accounts.maintenance_check_secs`; a revocation is told at once by the API.

use std::time::Duration;

use moonengage_accounts::AccountsSettings;
use moonengage_accounts::maintenance;
use sqlx::PgPool;

use super::Service;

/// Announces the end of grants that expired.
#[derive(Debug)]
pub struct MaintenanceExpiry {
    every: Duration,
}

impl MaintenanceExpiry {
    /// A check every `accounts.maintenance_check_secs`.
    pub fn new(settings: &AccountsSettings) -> MaintenanceExpiry {
        MaintenanceExpiry {
            every: Duration::from_secs(settings.maintenance_check_secs.max(1)),
        }
    }
}

impl Service for MaintenanceExpiry {
    const NAME: &'static str = "maintenance_expiry";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn run_once(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        for grant_id in maintenance::end_expired(pool).await? {
            tracing::info!(grant_id, "maintenance grant ran out; owners told");
        }
        Ok(())
    }
}
