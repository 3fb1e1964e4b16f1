//! The per-Page send rate limiter, shared by every worker through Redis: GCRA as one atomic
//! script that *reserves* slots, so concurrent senders get distinct, evenly spaced send times
//! instead of retrying in a loop. If Redis is unreachable, each worker limits itself in-process
//! to 80% of the Page's rate divided by the number of live workers, warns once, and tries Redis
//! again a few seconds later — sending neither stops nor runs unbounded.
//!
//! Both paths take the same GCRA step (`gcra`, mirrored line for line by the `RESERVE` script),
//! and neither may add to what is already booked when sending switches between them:
//!
//! - Every call to Redis carries this worker's *booking horizon* for the Page (how far ahead its
//!   latest slot, granted by Redis or locally, plus one interval lies), and the script starts
//!   from the later of its stored state and that horizon. A Page whose state vanished (Redis
//!   restarted or failed over empty, `FLUSHALL`, eviction) therefore restarts after what the
//!   workers still have booked, not from an empty bucket; the latest horizon wins.
//! - Workers that use Redis mark themselves present in it (a one-second lease). While fewer are
//!   present than are alive, the Redis rate leaves room for the missing ones' fallback shares,
//!   so one worker cut off from Redis (or back on it later than the others) adds nothing on
//!   top.
//! - A worker that switches to its fallback first waits out one lease past what it booked
//!   through Redis, the time the others need to see it gone and leave it its share.
//!
//! With `burst_ms` above 0 (the default is 0), a switch may let the first sends go up to the
//! burst early, exactly as an idle Page's first sends may on either path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::settings::RedisSettings;
use fallback::{LocalPage, LocalState};
use gcra::{RESERVE, from_micros, interval_of, micros};
use moonengage_ops::metrics;

mod fallback;
mod gcra;

/// How the limiter paces each Page.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Burst allowed on top of the steady rate, as time at that rate (100 ms at 250/s is 25).
    pub burst_ms: u64,
    /// A send that would wait longer than this is put back in the queue instead of holding a
    /// worker slot.
    pub max_wait_ms: u64,
    /// When Facebook reports this percentage of a Page's budget used, the Page slows to half.
    pub slowdown_percent: u8,
    /// How long a slow-down lasts.
    pub slowdown_secs: u64,
    /// Pause of a rate-limited Page when Facebook gives no estimate of when access returns.
    pub pause_secs: u64,
}

/// The limiter's answer for one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// A slot is reserved after this wait (zero: send now).
    After(Duration),
    /// The Page is saturated for longer than `max_wait_ms`: requeue and try again after this.
    Requeue(Duration),
}

/// Consecutive send slots of one Page reserved in one go, so a batch of sends costs one Redis
/// call instead of one per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// When each granted send may go, earliest first, spaced at the Page's rate. At most the
    /// number asked for, and only slots within `max_wait_ms`: a worker never holds a job longer
    /// than that waiting for its turn.
    pub slots: Vec<Instant>,
    /// Set when fewer slots were granted than asked for: the callers requeue the rest and try
    /// again after this (the wait the first refused slot would have had).
    pub requeue_after: Option<Duration>,
}

/// Share of its fair rate a worker uses while Redis is down: headroom for sends still queued
/// under Redis reservations and for workers that notice the outage at different moments.
const FALLBACK_SHARE: f64 = 0.8;

/// How long a worker counts as using Redis after its last call. Shorter than a busy worker's
/// gaps between calls would shrink the others' rate for nothing; longer keeps a worker that
/// switched to its fallback quiet for longer.
const PRESENCE_LEASE: Duration = Duration::from_secs(1);

/// How late a sender may wake for its reserved slot before it gives the slot up: senders that
/// woke late together (a process starved of CPU) would otherwise leave as one burst.
const LATE: Duration = Duration::from_millis(20);

/// Slots given up in a row before sending anyway, so a starved process still makes progress.
const MAX_FORFEITS: usize = 5;

/// How long Redis is left alone after it failed, before it is tried again.
const REDIS_RETRY: Duration = Duration::from_secs(3);

/// One limiter per worker process, shared by all its senders (its fallback state and its
/// presence in Redis are the process's).
pub struct RateLimiter {
    redis: Option<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    /// This process's name in the presence set.
    id: String,
    settings: RateLimitSettings,
    live_workers: AtomicUsize,
    /// The zero of the local clock the fallback's GCRA counts in (µs).
    epoch: Instant,
    local: Mutex<LocalState>,
}

impl RateLimiter {
    /// Connects lazily: a worker starts, and sends under the fallback, while Redis is down.
    pub fn new(redis: &RedisSettings, settings: &RateLimitSettings) -> anyhow::Result<RateLimiter> {
        let manager = match redis.url.as_ref().map(|url| url.expose_secret().trim()) {
            Some(url) if !url.is_empty() => {
                let client = redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("invalid redis.url: {e}"))?;
                let timeout = Some(Duration::from_millis(redis.timeout_ms));
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(1);
                Some(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            _ => None,
        };
        if manager.is_none() {
            tracing::warn!("no redis.url: every worker limits its Pages in-process");
        }
        Ok(RateLimiter {
            redis: manager,
            script: redis::Script::new(RESERVE),
            prefix: redis.key_prefix.clone(),
            id: format!("{:016x}", rand::random::<u64>()),
            settings: settings.clone(),
            live_workers: AtomicUsize::new(1),
            epoch: Instant::now(),
            local: Mutex::new(LocalState::default()),
        })
    }

    /// How many workers share each Page's rate: each one's share while Redis is down, and the
    /// room the Redis rate leaves for workers that do not use it.
    pub fn set_live_workers(&self, workers: usize) {
        self.live_workers.store(workers.max(1), Ordering::Relaxed);
    }

    /// Reserves up to `n` consecutive send slots of a Page that may send `rate` messages per
    /// second, in one Redis call (or in-process while Redis is down), for a caller that sends a
    /// batch: it sends each at its slot ([`RateLimiter::wait_for_slot`]) and requeues the rest
    /// after `requeue_after`.
    pub async fn reserve_batch(&self, page_id: i64, rate: u32, n: usize) -> Reservation {
        if n == 0 {
            return Reservation {
                slots: Vec::new(),
                requeue_after: None,
            };
        }
        let interval = interval_of(rate);
        if let Some(redis) = self.redis_if_up() {
            match self.reserve_shared(redis, page_id, interval, n).await {
                Ok(reservation) => {
                    self.redis_recovered();
                    return reservation;
                }
                Err(error) => self.redis_failed(&error),
            }
        }
        self.reserve_locally(page_id, interval, n)
    }

    /// Reserves one send slot of a Page, for a caller that sleeps until it and sends (counted
    /// in the Page's busiest second at its slot).
    pub async fn acquire(&self, page_id: i64, rate: u32) -> Permit {
        let reservation = self.reserve_batch(page_id, rate, 1).await;
        match reservation.slots.first() {
            Some(slot) => {
                metrics::page_send(page_id, *slot);
                Permit::After(slot.saturating_duration_since(Instant::now()))
            }
            None => Permit::Requeue(reservation.requeue_after.unwrap_or_default()),
        }
    }

    /// Sleeps until a reserved slot. A sender that wakes more than 20 ms after it (a process
    /// starved of CPU) gives the slot up and takes a fresh one, since late senders leaving
    /// together would be a burst; after five in a row it sends anyway, so it still makes
    /// progress. Returns how long it waited, or `Err(after)` when a fresh slot was refused
    /// and the send should be requeued.
    pub async fn wait_for_slot(
        &self,
        page_id: i64,
        rate: u32,
        slot: Instant,
    ) -> Result<Duration, Duration> {
        let started = Instant::now();
        let mut slot = slot;
        for forfeits in 1.. {
            tokio::time::sleep_until(slot.into()).await;
            if slot.elapsed() <= LATE || forfeits >= MAX_FORFEITS {
                break;
            }
            let fresh = self.reserve_batch(page_id, rate, 1).await;
            match fresh.slots.first() {
                Some(next) => slot = *next,
                None => return Err(fresh.requeue_after.unwrap_or_default()),
            }
        }
        metrics::page_send(page_id, Instant::now());
        Ok(started.elapsed())
    }

    /// Waits for this sender's turn to send one message from a Page: reserves a slot and
    /// waits for it ([`RateLimiter::wait_for_slot`]). Returns how long it waited, or
    /// `Err(after)` when the Page is saturated and the send should be requeued instead.
    pub async fn wait_turn(&self, page_id: i64, rate: u32) -> Result<Duration, Duration> {
        let started = Instant::now();
        let reservation = self.reserve_batch(page_id, rate, 1).await;
        let Some(slot) = reservation.slots.first() else {
            return Err(reservation.requeue_after.unwrap_or_default());
        };
        self.wait_for_slot(page_id, rate, *slot)
            .await
            .map(|_| started.elapsed())
    }

    /// Halves a Page's rate for a while: Facebook says its budget is nearly used.
    pub async fn slow_down(&self, page_id: i64) {
        let seconds = self.settings.slowdown_secs;
        if let Some(redis) = self.redis_if_up() {
            let mut conn = redis.clone();
            let result: redis::RedisResult<()> = redis::cmd("SET")
                .arg(self.key(page_id, "slow"))
                .arg(1)
                .arg("EX")
                .arg(seconds)
                .query_async(&mut conn)
                .await;
            if let Err(error) = result {
                self.redis_failed(&error);
            }
        }
        let now = self.now();
        if let Ok(mut local) = self.local.lock() {
            let quiet_until = local.quiet_until;
            let page = local
                .pages
                .entry(page_id)
                .or_insert(LocalPage::at(quiet_until.max(now)));
            page.slow_until = Some(Instant::now() + Duration::from_secs(seconds));
        }
    }

    /// Whether sends are limited through Redis right now (false: the in-process fallback).
    pub fn is_shared(&self) -> bool {
        self.redis_if_up().is_some()
    }

    fn key(&self, page_id: i64, what: &str) -> String {
        format!("{}:rl:{page_id}:{what}", self.prefix)
    }

    /// µs since the epoch.
    fn now(&self) -> i64 {
        micros(self.epoch.elapsed())
    }

    fn redis_if_up(&self) -> Option<&ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let local = self.local.lock().ok()?;
        match local.redis_down_until {
            Some(until) if Instant::now() < until => None,
            _ => Some(redis),
        }
    }

    /// One Redis call: the script with this process's horizon for the Page; what it grants
    /// moves the horizon on.
    async fn reserve_shared(
        &self,
        redis: &ConnectionManager,
        page_id: i64,
        interval: i64,
        n: usize,
    ) -> redis::RedisResult<Reservation> {
        let asked = self.now();
        let horizon = self
            .local
            .lock()
            .ok()
            .and_then(|local| local.pages.get(&page_id).map(|page| page.tat - asked))
            .unwrap_or(0)
            .max(0);
        let mut conn = redis.clone();
        let answer: Vec<i64> = self
            .script
            .key(self.key(page_id, "slot"))
            .key(self.key(page_id, "slow"))
            .key(format!("{}:rl:workers", self.prefix))
            .arg(interval)
            .arg(micros(Duration::from_millis(self.settings.burst_ms)))
            .arg(micros(Duration::from_millis(self.settings.max_wait_ms)))
            .arg(n)
            .arg(horizon)
            .arg(&self.id)
            .arg(self.live_workers.load(Ordering::Relaxed))
            .arg(FALLBACK_SHARE)
            .arg(micros(PRESENCE_LEASE))
            .invoke_async(&mut conn)
            .await?;
        // Slots count from the answer (a slow answer makes them late, never early); the horizon
        // counts from the question, so the round trip does not push the Page's state on.
        let answered = Instant::now();
        let [refused, interval, waits @ ..] = answer.as_slice() else {
            return Err((
                redis::ErrorKind::UnexpectedReturnType,
                "the reservation script answered fewer than two numbers",
            )
                .into());
        };
        if let Ok(mut local) = self.local.lock() {
            local.last_shared = Some(self.now());
            if let Some(last) = waits.last() {
                let booked = asked + last + interval;
                let page = local.pages.entry(page_id).or_insert(LocalPage::at(booked));
                page.tat = page.tat.max(booked);
            }
        }
        Ok(Reservation {
            slots: waits.iter().map(|w| answered + from_micros(*w)).collect(),
            requeue_after: (*refused >= 0).then(|| from_micros(*refused)),
        })
    }
}

#[cfg(test)]
mod tests;
