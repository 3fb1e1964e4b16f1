//! Riding out a lost database, shared by every process that works the queue: whatever loop
//! loses Postgres (at start or while running) waits with capped exponential backoff and jitter
//! and tries again, and the process says so once at `warn` when the database goes and once at
//! `info` when it is back, not a line per attempt of each of its loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The first wait after the database is lost.
const FIRST_MS: u64 = 500;
/// The longest wait between two attempts.
const CAP_MS: u64 = 30_000;

/// Set while this process finds the database unreachable; every loop shares it so the outage is
/// logged once.
static UNREACHABLE: AtomicBool = AtomicBool::new(false);

/// A random delay between half and all of `base_ms * 2^attempt`, capped at `cap_ms`: retries
/// that failed together spread out instead of arriving together.
pub fn jittered(base_ms: u64, cap_ms: u64, attempt: u32) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(cap_ms)
        .max(1);
    let half = ceiling / 2;
    Duration::from_millis(half + rand::random::<u64>() % (ceiling - half + 1))
}

/// The waits of one loop that lost the database: 0.5 s doubling up to 30 s, jittered, and back
/// to the start once an attempt succeeds.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a failed attempt and says how long to wait before the next.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jittered(FIRST_MS, CAP_MS, self.failures);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Records a successful attempt: the next outage starts from the first wait again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Whether an error means the database cannot be reached (refused or dropped connections, a
/// pool that timed out connecting, a server shutting down), as opposed to a statement that
/// failed on a reachable database.
pub fn is_unreachable(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(sqlx_unreachable)
}

/// [`is_unreachable`] for a bare sqlx error.
pub fn sqlx_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exceptions; 57P01-57P03: the server is shutting down or
        // starting up.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Records that the database could not be reached; only the first loop to notice logs it.
pub fn lost(error: &anyhow::Error) {
    if !UNREACHABLE.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %format!("{error:#}"), "database unreachable, retrying with backoff");
    }
}

/// Records that an attempt reached the database; the first success after an outage logs it.
pub fn reached() {
    if UNREACHABLE.load(Ordering::Relaxed) && UNREACHABLE.swap(false, Ordering::Relaxed) {
        tracing::info!("database reachable again");
    }
}

/// What a periodic task does with the result of one round: a lost database is reported once
/// for the whole process ([`lost`]), any other failure is logged as `what` at `warn`, and a
/// success ends an outage ([`reached`]). Says whether the round succeeded.
pub fn report<T>(result: Result<T, impl Into<anyhow::Error>>, what: &str) -> Option<T> {
    match result {
        Ok(value) => {
            reached();
            Some(value)
        }
        Err(error) => {
            let error = error.into();
            if is_unreachable(&error) {
                lost(&error);
            } else {
                tracing::warn!(error = %format!("{error:#}"), "{what} failed");
            }
            None
        }
    }
}

/// Runs `attempt` until it succeeds or fails for another reason than an unreachable database,
/// waiting with [`Backoff`] in between: how a process that starts before its database (or
/// while it restarts) comes up instead of exiting.
pub async fn retry<T, F, Fut>(mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::default();
    loop {
        match attempt().await {
            Ok(value) => {
                reached();
                return Ok(value);
            }
            Err(error) if is_unreachable(&error) => {
                lost(&error);
                tokio::time::sleep(backoff.next_wait()).await;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_half_a_second_up_to_thirty_with_jitter() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next_wait()).collect();
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = (FIRST_MS << n).min(CAP_MS);
            let wait = u64::try_from(wait.as_millis()).unwrap();
            assert!(
                (ceiling / 2..=ceiling).contains(&wait),
                "{n}: {wait} of {ceiling}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(FIRST_MS));
    }

    #[test]
    fn only_connection_failures_count_as_unreachable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unreachable(
            &anyhow::Error::from(sqlx::Error::Io(refused)).context("claiming")
        ));
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut.into()));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound.into()));
        assert!(!is_unreachable(&anyhow::anyhow!("no database here")));
    }
}
