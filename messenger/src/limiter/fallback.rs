//! The in-process fallback while Redis is unreachable: the same GCRA step at this worker's share
//! of each Page's rate, on its own clock, starting after what it booked through Redis.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::gcra::{Step, from_micros, gcra, micros};
use super::{FALLBACK_SHARE, PRESENCE_LEASE, REDIS_RETRY, RateLimiter, Reservation};

#[derive(Default)]
pub(super) struct LocalState {
    /// When Redis may be tried again; `None` while it works.
    pub(super) redis_down_until: Option<Instant>,
    /// When this process last had an answer from Redis (µs since the epoch): until one presence
    /// lease later, the other workers count it present and use the whole rate.
    pub(super) last_shared: Option<i64>,
    /// The fallback sends nothing before this (µs since the epoch): the end of that lease.
    pub(super) quiet_until: i64,
    /// Per Page: this process's booking horizon and the end of a slow-down.
    pub(super) pages: HashMap<i64, LocalPage>,
}

pub(super) struct LocalPage {
    /// µs since the epoch of this process's latest slot of the Page plus one interval: the
    /// fallback's GCRA state, and the horizon every Redis call carries.
    pub(super) tat: i64,
    pub(super) slow_until: Option<Instant>,
}

impl RateLimiter {
    /// The fallback: the same step at this worker's share of the rate, on its own clock.
    pub(super) fn reserve_locally(&self, page_id: i64, interval: i64, n: usize) -> Reservation {
        let workers = self.live_workers.load(Ordering::Relaxed) as f64;
        let mut interval = (interval as f64 * workers / FALLBACK_SHARE).ceil() as i64;
        let (now_instant, now) = (Instant::now(), self.now());
        let Ok(mut local) = self.local.lock() else {
            return Reservation {
                slots: Vec::new(),
                requeue_after: Some(from_micros(interval)),
            };
        };
        let quiet_until = local.quiet_until;
        let page = local
            .pages
            .entry(page_id)
            .or_insert(LocalPage::at(quiet_until.max(now)));
        if page.slow_until.is_some_and(|until| until > now_instant) {
            interval *= 2;
        }
        let granted = gcra(
            page.tat,
            0,
            now,
            Step {
                interval,
                burst: micros(Duration::from_millis(self.settings.burst_ms)),
                max_wait: micros(Duration::from_millis(self.settings.max_wait_ms)),
                n,
            },
        );
        page.tat = granted.tat;
        Reservation {
            slots: granted
                .waits
                .iter()
                .map(|w| now_instant + from_micros(*w))
                .collect(),
            requeue_after: granted.refused.map(from_micros),
        }
    }

    /// Switches to the fallback. Until one presence lease after this process's last answer
    /// from Redis, the others count it present and reserve the whole rate, and those slots
    /// reach as far past then as its own reached past its last answer: so the fallback starts
    /// each Page one lease after what this process booked of it, and nothing before the lease
    /// ends. A process that never reached Redis was never counted and starts at once.
    pub(super) fn redis_failed(&self, error: &redis::RedisError) {
        if let Ok(mut local) = self.local.lock() {
            if local.redis_down_until.is_none() {
                tracing::warn!(
                    %error,
                    workers = self.live_workers.load(Ordering::Relaxed),
                    "Redis unreachable: limiting Pages in-process at their rate divided by live workers"
                );
                if let Some(last) = local.last_shared {
                    let lease = micros(PRESENCE_LEASE);
                    let quiet_until = last + lease;
                    local.quiet_until = quiet_until;
                    for page in local.pages.values_mut() {
                        page.tat = (page.tat + lease).max(quiet_until);
                    }
                }
            }
            local.redis_down_until = Some(Instant::now() + REDIS_RETRY);
        }
    }

    /// Back on Redis: said once, as the outage was.
    pub(super) fn redis_recovered(&self) {
        if let Ok(mut local) = self.local.lock()
            && local.redis_down_until.take().is_some()
        {
            tracing::info!("Redis reachable again: Page rates are shared across workers");
        }
    }
}

impl LocalPage {
    /// A Page first seen at `tat`.
    pub(super) fn at(tat: i64) -> LocalPage {
        LocalPage {
            tat,
            slow_until: None,
        }
    }
}
