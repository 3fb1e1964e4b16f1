//! The library every MoonEngage process shares: settings, the database and its queue, envelope
//! encryption, unsubscribe tokens, the Messenger client and message templates.

pub mod campaigns;
pub mod crypto;
pub mod db;
pub mod messenger;
pub mod pages;
pub mod queue;
pub mod settings;
pub mod shutdown;
pub mod subscribers;
pub mod telemetry;
pub mod template;
pub mod unsubscribe;
