//! The library every MoonEngage process shares: settings, the database and its queue, envelope
//! encryption, unsubscribe tokens, the Messenger client and message templates.

pub mod admin_tokens;
pub mod campaigns;
pub mod crypto;
pub mod db;
pub mod dsr;
pub mod email;
pub mod incidents;
pub mod jobs;
pub mod key_rotation;
pub mod messenger;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod policy;
pub mod privacy;
pub mod profile;
pub mod rate_limit;
pub mod settings;
pub mod shutdown;
pub mod subscribers;
pub mod telemetry;
pub mod template;
pub mod unsubscribe;
pub mod webhook;
