//! The per-Page send rate limiter, shared by every worker through Redis: GCRA as one atomic
//! script that *reserves* a slot, so concurrent senders get distinct, evenly spaced send times
//! instead of retrying in a loop. If Redis is unreachable, each worker limits itself in-process
//! to 80% of the Page's rate divided by the number of live workers, without bursts, warns once,
//! and tries Redis again a few seconds later — sending neither stops nor runs unbounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::settings::RedisSettings;

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

/// Reserves the next send slot of a Page. KEYS: slot time, slow-down flag. ARGV: interval and
/// burst in µs, longest wait in µs. Returns the wait in µs, negative when nothing was reserved
/// because the wait would be too long. Uses the Redis clock, so workers' clocks do not matter.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then interval = interval * 2 end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat - tonumber(ARGV[2]), now)
local wait = slot - now
if wait > tonumber(ARGV[3]) then return -wait end
local next = math.max(tat, now) + interval
redis.call('SET', KEYS[1], next, 'PX', math.floor((next - now) / 1000) + 1000)
return wait
";

/// Share of its fair rate a worker uses while Redis is down: headroom for sends still queued
/// under Redis reservations and for workers that notice the outage at different moments.
const FALLBACK_SHARE: f64 = 0.8;

/// How late a sender may wake for its reserved slot before it gives the slot up: senders that
/// woke late together (a process starved of CPU) would otherwise leave as one burst.
const LATE: Duration = Duration::from_millis(20);

/// Slots given up in a row before sending anyway, so a starved process still makes progress.
const MAX_FORFEITS: usize = 5;

/// How long Redis is left alone after it failed, before it is tried again.
const REDIS_RETRY: Duration = Duration::from_secs(3);

/// One limiter per worker process.
pub struct RateLimiter {
    redis: Option<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    settings: RateLimitSettings,
    live_workers: AtomicUsize,
    local: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    /// When Redis may be tried again; `None` while it works.
    redis_down_until: Option<Instant>,
    /// Per Page: the next free slot and the end of a slow-down, for the in-process fallback.
    pages: HashMap<i64, LocalPage>,
}

struct LocalPage {
    tat: Instant,
    slow_until: Option<Instant>,
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
            settings: settings.clone(),
            live_workers: AtomicUsize::new(1),
            local: Mutex::new(LocalState::default()),
        })
    }

    /// How many workers share each Page's rate when Redis is down.
    pub fn set_live_workers(&self, workers: usize) {
        self.live_workers.store(workers.max(1), Ordering::Relaxed);
    }

    /// Reserves a send slot for a Page that may send `rate` messages per second.
    pub async fn acquire(&self, page_id: i64, rate: u32) -> Permit {
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        if let Some(redis) = self.redis_if_up() {
            let mut conn = redis.clone();
            let result: redis::RedisResult<i64> = self
                .script
                .key(self.key(page_id, "slot"))
                .key(self.key(page_id, "slow"))
                .arg(interval.as_micros() as u64)
                .arg(self.settings.burst_ms * 1_000)
                .arg(self.settings.max_wait_ms * 1_000)
                .invoke_async(&mut conn)
                .await;
            match result {
                Ok(wait) => {
                    self.redis_recovered();
                    let wait_for = Duration::from_micros(wait.unsigned_abs());
                    if wait < 0 {
                        return Permit::Requeue(wait_for);
                    }
                    self.note_shared_slot(page_id, wait_for);
                    return Permit::After(wait_for);
                }
                Err(error) => self.redis_failed(&error),
            }
        }
        let workers = self.live_workers.load(Ordering::Relaxed) as u32;
        self.acquire_locally(
            page_id,
            interval.mul_f64(f64::from(workers) / FALLBACK_SHARE),
        )
    }

    /// Waits for this sender's turn to send from a Page: reserves a slot, sleeps until it, and
    /// reserves again if it woke too late to use it. Returns how long it waited, or
    /// `Err(after)` when the Page is saturated and the send should be requeued instead.
    pub async fn wait_turn(&self, page_id: i64, rate: u32) -> Result<Duration, Duration> {
        let started = Instant::now();
        for _ in 0..MAX_FORFEITS {
            match self.acquire(page_id, rate).await {
                Permit::Requeue(after) => return Err(after),
                Permit::After(wait) => {
                    let slot = Instant::now() + wait;
                    tokio::time::sleep_until(slot.into()).await;
                    if slot.elapsed() <= LATE {
                        break;
                    }
                }
            }
        }
        Ok(started.elapsed())
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
        if let Ok(mut local) = self.local.lock() {
            let page = local.pages.entry(page_id).or_insert_with(|| LocalPage {
                tat: Instant::now(),
                slow_until: None,
            });
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

    fn redis_if_up(&self) -> Option<&ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let local = self.local.lock().ok()?;
        match local.redis_down_until {
            Some(until) if Instant::now() < until => None,
            _ => Some(redis),
        }
    }

    fn redis_failed(&self, error: &redis::RedisError) {
        if let Ok(mut local) = self.local.lock() {
            if local.redis_down_until.is_none() {
                tracing::warn!(
                    %error,
                    workers = self.live_workers.load(Ordering::Relaxed),
                    "Redis unreachable: limiting Pages in-process at their rate divided by live workers"
                );
            }
            local.redis_down_until = Some(Instant::now() + REDIS_RETRY);
        }
    }

    fn redis_recovered(&self) {
        if let Ok(mut local) = self.local.lock()
            && local.redis_down_until.take().is_some()
        {
            tracing::info!("Redis reachable again: Page rates are shared across workers");
        }
    }

    /// Remembers the last slot Redis granted this process, so a fallback starts after the sends
    /// already reserved instead of adding a second full rate on top of them.
    fn note_shared_slot(&self, page_id: i64, wait: Duration) {
        if let Ok(mut local) = self.local.lock() {
            let slot = Instant::now() + wait;
            let page = local.pages.entry(page_id).or_insert(LocalPage {
                tat: slot,
                slow_until: None,
            });
            page.tat = page.tat.max(slot);
        }
    }

    /// The same GCRA reservation as the Redis script, for this process alone.
    fn acquire_locally(&self, page_id: i64, interval: Duration) -> Permit {
        let Ok(mut local) = self.local.lock() else {
            return Permit::After(interval);
        };
        let now = Instant::now();
        let page = local.pages.entry(page_id).or_insert(LocalPage {
            tat: now,
            slow_until: None,
        });
        let interval = match page.slow_until {
            Some(until) if until > now => interval * 2,
            _ => interval,
        };
        // No burst on the fallback: without a shared clock, bursts of workers could coincide.
        let slot = page.tat.max(now);
        let wait = slot - now;
        if wait > Duration::from_millis(self.settings.max_wait_ms) {
            return Permit::Requeue(wait);
        }
        page.tat = page.tat.max(now) + interval;
        Permit::After(wait)
    }
}
