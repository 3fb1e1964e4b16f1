//! Received webhook events as stored: one minimal row per event (the Page, the sealed sender, a
//! hash of the message id and the classification) until a worker processes it.

mod events;
mod group;

pub use events::{EventRow, StoreOutcome, finish, load_in_order, store};
pub use group::GroupWriter;
