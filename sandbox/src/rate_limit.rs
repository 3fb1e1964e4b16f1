//! Sliding one-second windows: the per-Page Send API rate limit (code 613) and the
//! `max_per_second` statistic tests use to prove the workers throttle themselves.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The length of every window: the Graph API's limit is per second.
const WINDOW: Duration = Duration::from_secs(1);
/// How long [`SlidingWindow::insert`] keeps events: a little more than a window, so an event
/// that arrives slightly out of order still finds every event of its window.
const KEEP: Duration = Duration::from_secs(2);

/// Instants of recent events, oldest first.
///
/// [`count`](Self::count), [`push`](Self::push) and [`admit`](Self::admit) need non-decreasing
/// instants (take `Instant::now()` under the lock that guards the window);
/// [`insert`](Self::insert) accepts instants slightly out of order.
#[derive(Debug, Default)]
pub(crate) struct SlidingWindow {
    events: VecDeque<Instant>,
}

/// The answer to a call that asks to use the Page's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    /// Whether the call fits in the budget (otherwise: code 613).
    pub(crate) allowed: bool,
    /// Share of the current second's budget used, in percent (0 when unlimited), for the
    /// `X-Business-Use-Case-Usage` header.
    pub(crate) usage_percent: u32,
    /// When the call was admitted: the instant its message counts at if it is accepted.
    pub(crate) at: Instant,
}

impl SlidingWindow {
    /// How many events happened in the second ending at `now`.
    pub(crate) fn count(&mut self, now: Instant) -> usize {
        while let Some(&oldest) = self.events.front() {
            if now.duration_since(oldest) < WINDOW {
                break;
            }
            self.events.pop_front();
        }
        self.events.len()
    }

    /// Records an event at `now` and returns how many happened in the second ending at `now`.
    pub(crate) fn push(&mut self, now: Instant) -> usize {
        let count = self.count(now) + 1;
        self.events.push_back(now);
        count
    }

    /// Admits a call at `now` if fewer than `limit` were admitted in the last second; `limit` 0
    /// means unlimited (nothing is tracked then).
    pub(crate) fn admit(&mut self, now: Instant, limit: u32) -> Admission {
        if limit == 0 {
            self.events.clear();
            return Admission {
                allowed: true,
                usage_percent: 0,
                at: now,
            };
        }
        let used = self.count(now);
        let allowed = used < limit as usize;
        let used = if allowed { self.push(now) } else { used };
        Admission {
            allowed,
            usage_percent: usage_percent(used, limit),
            at: now,
        }
    }

    /// Records an event at `at`, which may be slightly older than the newest one (a call admitted
    /// earlier but recorded later), and returns the most events in any one-second window ending at
    /// `at` or at a later event: the windows this event joined.
    pub(crate) fn insert(&mut self, at: Instant) -> usize {
        let newest = self.events.back().map_or(at, |&newest| newest.max(at));
        while let Some(&oldest) = self.events.front() {
            if newest.duration_since(oldest) < KEEP {
                break;
            }
            self.events.pop_front();
        }
        let position = self.events.partition_point(|&event| event <= at);
        self.events.insert(position, at);
        (position..self.events.len())
            .map(|end| {
                let end_at = self.events[end];
                let start = self
                    .events
                    .partition_point(|&event| end_at.duration_since(event) >= WINDOW);
                end + 1 - start
            })
            .max()
            .unwrap_or(0)
    }

    /// The share of `limit` used in the second ending at `now`, without using any.
    pub(crate) fn usage(&mut self, now: Instant, limit: u32) -> u32 {
        if limit == 0 {
            return 0;
        }
        usage_percent(self.count(now), limit)
    }
}

fn usage_percent(used: usize, limit: u32) -> u32 {
    let percent = used.saturating_mul(100) / limit as usize;
    percent.min(100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_refuses_until_the_second_passes() {
        let mut window = SlidingWindow::default();
        let start = Instant::now();
        for i in 0..4 {
            let admission = window.admit(start + Duration::from_millis(i * 10), 4);
            assert!(admission.allowed, "call {i}");
        }
        let refused = window.admit(start + Duration::from_millis(999), 4);
        assert_eq!((refused.allowed, refused.usage_percent), (false, 100));
        let later = window.admit(start + Duration::from_millis(1000), 4);
        assert_eq!((later.allowed, later.usage_percent), (true, 100));
        assert_eq!(window.usage(start + Duration::from_millis(1025), 4), 50);
    }

    #[test]
    fn unlimited_admits_everything_and_reports_no_usage() {
        let mut window = SlidingWindow::default();
        let now = Instant::now();
        assert!((0..10_000).all(|_| window.admit(now, 0).allowed));
        assert_eq!(window.usage(now, 0), 0);
    }

    #[test]
    fn insert_counts_the_windows_a_late_event_joins() {
        let mut window = SlidingWindow::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(window.insert(at(0)), 1);
        assert_eq!(window.insert(at(900)), 2);
        assert_eq!(window.insert(at(1500)), 2);
        // Older than the newest: it joins the windows ending at 1300 (0 is out) and at 1500.
        assert_eq!(window.insert(at(1300)), 3);
        // Far later: everything but the last second is gone.
        assert_eq!(window.insert(at(2450)), 2);
        assert_eq!(window.insert(at(5000)), 1);
    }

    #[test]
    fn push_counts_events_in_the_trailing_second() {
        let mut window = SlidingWindow::default();
        let start = Instant::now();
        assert_eq!(window.push(start), 1);
        assert_eq!(window.push(start + Duration::from_millis(500)), 2);
        assert_eq!(window.push(start + Duration::from_millis(1200)), 2);
        assert_eq!(window.count(start + Duration::from_millis(2000)), 1);
        assert_eq!(window.count(start + Duration::from_millis(2200)), 0);
    }
}
