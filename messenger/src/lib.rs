//! Facebook's edge: the Send and Profile API client with its error classes, the per-Page rate
//! limiter shared through Redis, and what Facebook sends us — webhook payloads, their
//! signatures and the signed data-deletion callback. Nothing here touches the database.

mod client;
mod error;
pub mod limiter;
pub mod settings;
pub mod signed_request;
pub mod webhook;

pub use client::*;
pub use error::{ErrorClass, GraphError, SendError};
