//! Messenger webhooks as Facebook sends them: the signature over the raw body, and the parsing
//! and classification of events in memory. What a person wrote is classified (unsubscribe, data
//! request, nothing) and dropped here; only the classification goes on.

mod intent;
mod payload;
mod signature;

pub use intent::{Intent, KeywordSettings};
pub use payload::{EventKind, InboundEvent, Malformed, Parsed, PayloadError, Problem, parse};
pub use signature::{SignatureError, hmac_sha256, verify_hmac_sha256, verify_signature};
