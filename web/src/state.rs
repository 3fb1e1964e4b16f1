//! What every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use moonengage_accounts::login_limit::LoginLimiter;
use moonengage_core::settings::Settings;
use moonengage_core::webhook::GroupWriter;
use moonengage_privacy::crypto::Keyring;
use moonengage_privacy::unsubscribe::UnsubscribeSigner;
use moonengage_queue::wake::Nudges;
use sqlx::PgPool;

/// Connections, keys and settings, cloned cheaply into each request.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The database and its queue.
    pub pool: PgPool,
    /// Wakes workers after webhook events are stored (coalesced, outside transactions).
    pub nudges: Nudges,
    /// Stores webhook deliveries in groups (see `moonengage_core::webhook::GroupWriter`).
    pub webhook_writer: GroupWriter,
    /// Seals PSIDs and Page tokens.
    pub keyring: Keyring,
    /// Verifies unsubscribe tokens.
    pub signer: Arc<UnsubscribeSigner>,
    /// Counts login attempts (Redis, or in-process while it is down).
    pub login_limiter: Arc<LoginLimiter>,
    /// Every setting (secrets stay wrapped).
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.pool.clone()
    }
}
