//! What the jobs about people (webhook events, notifications) share: connections and keys.

use moonengage_core::crypto::Keyring;
use moonengage_core::messenger;
use moonengage_core::settings::QueueSettings;
use sqlx::PgPool;

/// Shared by every webhook-event and notify job of a worker process.
pub struct ServiceContext {
    /// The database and its queue.
    pub(crate) pool: PgPool,
    /// Opens sealed PSIDs and Page tokens, seals new ones.
    pub(crate) keyring: Keyring,
    /// The Graph API, for service messages.
    pub(crate) client: messenger::Client,
    /// Attempts and backoff of the jobs these queue or retry.
    pub(crate) queue: QueueSettings,
}
