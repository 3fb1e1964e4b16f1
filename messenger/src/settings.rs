//! The `messenger` and `redis` settings: the Graph API endpoint with the app's secrets, and the
//! Redis the per-Page limiter shares.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

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

impl MessengerSettings {
    /// Budget for a whole Send API call.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
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
