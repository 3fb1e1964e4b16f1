//! What a queued job is ([`Job`]) and how running it can end ([`JobError`]).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of job of the generic `jobs` table. The payload is the serialized struct and carries
/// ids only: job rows are not encrypted and may outlive their work. How a kind *runs* is said
/// by the process that runs it (`run::Run`), so the web and the scheduler can queue jobs
/// without linking what runs them.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name of the kind, stored in every row: never the Rust type name, so a
    /// refactor cannot orphan queued rows.
    const KIND: &'static str;

    /// Attempts before the job fails for good; `None` takes `queue.max_attempts`. A job that
    /// must never be dropped (an admin e-mail) says `Some(i32::MAX)`.
    const MAX_ATTEMPTS: Option<i32> = None;

    /// The job's unique key within its kind: queuing the same work twice adds nothing.
    fn key(&self) -> String;

    /// The person the job is about, if any: erasing them removes the job (foreign key), and
    /// nothing ever has to search payloads for them.
    fn subscriber_id(&self) -> Option<i64> {
        None
    }
}

/// How a job that did not simply succeed ends; `Ok(())` is success.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Run it again later: after `after`, or after the backoff of its attempt when `None`.
    /// A deferral (a rate-limited Page, a key not loaded yet) does not spend an attempt.
    #[error("retry: {reason}")]
    Retry {
        /// When to run again; `None` is the exponential backoff of the attempt.
        after: Option<Duration>,
        /// Whether this attempt counts towards the job's `max_attempts`.
        spend_attempt: bool,
        /// Why, for the row's `last_error` (a class, never personal data).
        reason: String,
    },
    /// Hold the job until someone makes it due again (its run time moves to infinity).
    #[error("parked")]
    Park,
    /// It can never succeed: fail it for good, keeping the reason.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl JobError {
    /// An infrastructure failure (database, keys): retried with backoff, spending an attempt.
    pub fn retry(error: &anyhow::Error) -> JobError {
        JobError::Retry {
            after: None,
            spend_attempt: true,
            reason: format!("{error:#}"),
        }
    }

    /// A deferral: run again after `after` without spending an attempt.
    pub fn defer(after: Duration, reason: &str) -> JobError {
        JobError::Retry {
            after: Some(after),
            spend_attempt: false,
            reason: reason.to_owned(),
        }
    }
}

impl From<anyhow::Error> for JobError {
    fn from(error: anyhow::Error) -> JobError {
        JobError::retry(&error)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> JobError {
        JobError::retry(&anyhow::Error::new(error))
    }
}
