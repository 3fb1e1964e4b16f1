//! Messenger webhooks: the signature check over the raw body, the parsing and classification of
//! events in memory, and the minimal rows they are stored as until a worker processes them.
//!
//! What a person wrote is classified (unsubscribe, data request, nothing) and dropped here: only
//! the Page, the sealed sender, a hash of the message id and the classification are stored.

mod events;
mod intent;
mod payload;
mod signature;

pub use events::{EventRow, StoreOutcome, finish, load_in_order, store};
pub use intent::{Intent, KeywordSettings};
pub use payload::{EventKind, InboundEvent, Malformed, Parsed, PayloadError, Problem, parse};
pub use signature::{SignatureError, hmac_sha256, verify_hmac_sha256, verify_signature};
