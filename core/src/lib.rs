//! The domain every MoonEngage process shares: settings (composed from each crate's section),
//! the database, and the things the business works with — Pages, subscribers, campaigns and
//! their templates, stored webhook events, and the kinds of queued jobs that act on them.
//! Encryption and people's rights live in `moonengage-privacy`, Facebook's edge in
//! `moonengage-messenger`, metrics and alerts in `moonengage-ops`.

pub mod campaigns;
pub mod db;
pub mod jobs;
pub mod pages;
pub mod profile;
pub mod settings;
mod stored;
pub mod subscribers;
pub mod template;
pub mod webhook;
