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

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::settings::RedisSettings;
use moonengage_ops::metrics;

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

/// Reserves up to `n` consecutive slots of a Page: `gcra` on the Redis clock, so workers'
/// clocks do not matter. KEYS: slot time, slow-down flag, present workers. ARGV: interval,
/// burst, longest wait (µs), n, the caller's booking horizon (µs from now), its id, live
/// workers, fallback share, presence lease (µs). Returns the wait of the first refused slot
/// (-1: none refused), the interval used, then the wait of each granted slot (µs from now).
///
/// The caller marks itself present; while fewer workers are present than alive, the interval
/// grows so that the missing workers' fallback shares fit within the Page's rate. The state
/// starts from the latest of the stored slot time, the caller's horizon and now: a key that
/// vanished is seeded from what the caller has booked, never from an empty bucket.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local floor = now + tonumber(ARGV[5])
local live = tonumber(ARGV[7])
local lease = tonumber(ARGV[9])
redis.call('ZADD', KEYS[3], now, ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - lease)
redis.call('PEXPIRE', KEYS[3], math.ceil(lease / 1000) * 2)
local absent = math.max(live - redis.call('ZCARD', KEYS[3]), 0)
local interval = math.ceil(tonumber(ARGV[1]) / (1 - tonumber(ARGV[8]) * absent / live))
if redis.call('EXISTS', KEYS[2]) == 1 then interval = interval * 2 end
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), floor, now)
local result = {-1, interval}
for k = 0, n - 1 do
  local wait = math.max(start + k * interval - burst - now, 0)
  if wait > max_wait then
    result[1] = wait
    break
  end
  result[#result + 1] = wait
end
local tat = start + (#result - 2) * interval
redis.call('SET', KEYS[1], tat, 'PX', math.floor((tat - now) / 1000) + 1000)
return result
";

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

/// One GCRA step with a quantity, in µs on one clock.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Time between two slots.
    interval: i64,
    /// How much earlier than its slot time a send may go (the burst).
    burst: i64,
    /// Longest wait granted.
    max_wait: i64,
    /// Slots asked for.
    n: usize,
}

/// What a step grants.
#[derive(Debug, PartialEq, Eq)]
struct Granted {
    /// Wait of each granted slot from `now`.
    waits: Vec<i64>,
    /// Wait the first refused slot would have had.
    refused: Option<i64>,
    /// The state after the step: the next free slot.
    tat: i64,
}

/// The one definition of a slot, for both paths (`RESERVE` is this, in Lua): the next free
/// slot is the latest of the state `tat`, the caller's `floor` (what it has booked) and `now`;
/// slot `k` of the batch comes `k` intervals after it, at most `burst` earlier but never before
/// now; slots are granted while their wait is within `max_wait`, and the state moves on by the
/// granted slots only (refused ones are requeued, and reserve again when they come back).
fn gcra(tat: i64, floor: i64, now: i64, step: Step) -> Granted {
    let start = tat.max(floor).max(now);
    let mut waits = Vec::with_capacity(step.n);
    let mut refused = None;
    for k in 0..step.n as i64 {
        let wait = (start + k * step.interval - step.burst - now).max(0);
        if wait > step.max_wait {
            refused = Some(wait);
            break;
        }
        waits.push(wait);
    }
    let tat = start + waits.len() as i64 * step.interval;
    Granted {
        waits,
        refused,
        tat,
    }
}

/// Whole µs between slots at `rate` per second, rounded up (never faster than the rate).
fn interval_of(rate: u32) -> i64 {
    let rate = i64::from(rate.max(1));
    (1_000_000 + rate - 1) / rate
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

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

#[derive(Default)]
struct LocalState {
    /// When Redis may be tried again; `None` while it works.
    redis_down_until: Option<Instant>,
    /// When this process last had an answer from Redis (µs since the epoch): until one presence
    /// lease later, the other workers count it present and use the whole rate.
    last_shared: Option<i64>,
    /// The fallback sends nothing before this (µs since the epoch): the end of that lease.
    quiet_until: i64,
    /// Per Page: this process's booking horizon and the end of a slow-down.
    pages: HashMap<i64, LocalPage>,
}

struct LocalPage {
    /// µs since the epoch of this process's latest slot of the Page plus one interval: the
    /// fallback's GCRA state, and the horizon every Redis call carries.
    tat: i64,
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

    /// The fallback: the same step at this worker's share of the rate, on its own clock.
    fn reserve_locally(&self, page_id: i64, interval: i64, n: usize) -> Reservation {
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
    fn redis_failed(&self, error: &redis::RedisError) {
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

    fn redis_recovered(&self) {
        if let Ok(mut local) = self.local.lock()
            && local.redis_down_until.take().is_some()
        {
            tracing::info!("Redis reachable again: Page rates are shared across workers");
        }
    }
}

impl LocalPage {
    fn at(tat: i64) -> LocalPage {
        LocalPage {
            tat,
            slow_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against the Redis at 127.0.0.1:6379 (as the integration tests), each test under a key
    //! prefix of its own.

    use secrecy::SecretString;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Between slots of two calls: the round trip of the first (on a busy machine, a few ms).
    /// The behaviours ruled out are hundreds of ms off.
    const SLACK: Duration = Duration::from_millis(50);

    fn limiter(url: &str, prefix: &str, max_wait_ms: u64) -> RateLimiter {
        RateLimiter::new(
            &RedisSettings {
                url: Some(SecretString::from(url.to_owned())),
                key_prefix: prefix.to_owned(),
                timeout_ms: 250,
            },
            &RateLimitSettings {
                burst_ms: 0,
                max_wait_ms,
                slowdown_percent: 90,
                slowdown_secs: 10,
                pause_secs: 5,
            },
        )
        .expect("limiter")
    }

    fn shared(max_wait_ms: u64) -> (RateLimiter, String) {
        let prefix = format!("unit-{:016x}", rand::random::<u64>());
        (
            limiter("redis://127.0.0.1:6379", &prefix, max_wait_ms),
            prefix,
        )
    }

    /// A limiter whose Redis refuses connections: it runs on its fallback.
    fn unreachable(max_wait_ms: u64) -> RateLimiter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        limiter(&format!("redis://127.0.0.1:{port}"), "unit", max_wait_ms)
    }

    async fn redis(args: &[&str]) -> redis::Value {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }

    fn gaps(slots: &[Instant]) -> Vec<Duration> {
        slots.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= MS / 10
    }

    #[tokio::test]
    async fn rate_limit_a_batch_is_reserved_in_one_call_and_spaced_at_the_rate() {
        let (limiter, _) = shared(2_000);
        let batch = limiter.reserve_batch(1, 100, 20).await;
        assert!(limiter.is_shared());
        assert_eq!(batch.slots.len(), 20);
        assert_eq!(batch.requeue_after, None);
        assert!(gaps(&batch.slots).iter().all(|g| close(*g, 10 * MS)));
        // The next reservation queues behind the whole batch.
        let next = limiter.reserve_batch(1, 100, 1).await;
        assert!(next.slots[0] + SLACK >= batch.slots[19] + 10 * MS);
        assert!(limiter.reserve_batch(1, 100, 0).await.slots.is_empty());
    }

    #[tokio::test]
    async fn rate_limit_a_batch_past_the_longest_wait_is_granted_in_part() {
        let (limiter, _) = shared(500);
        let batch = limiter.reserve_batch(2, 10, 10).await;
        // Waits 0, 100, …, 500 ms are within 500 ms; the seventh slot would wait 600.
        assert_eq!(batch.slots.len(), 6);
        assert_eq!(batch.requeue_after, Some(600 * MS));
        // Refused slots are not kept: the Page is booked up to 600 ms, not 1 s, and the next
        // ones (within 100 ms of this machine's time) are refused too.
        let again = limiter.reserve_batch(2, 10, 3).await;
        assert!(again.slots.is_empty());
        assert!(
            again
                .requeue_after
                .is_some_and(|a| a > 500 * MS && a <= 600 * MS)
        );
        assert!(matches!(
            limiter.acquire(2, 10).await,
            Permit::Requeue(after) if after > 500 * MS && after <= 600 * MS
        ));
    }

    #[tokio::test]
    async fn rate_limit_the_fallback_reserves_batches_with_the_same_step_at_its_share() {
        let limiter = unreachable(500);
        let batch = limiter.reserve_batch(3, 10, 10).await;
        assert!(!limiter.is_shared(), "on the fallback");
        // One worker's fallback: 80% of 10/s, slots 125 ms apart; 0…500 ms are 5 of them.
        assert_eq!(batch.slots.len(), 5);
        assert!(gaps(&batch.slots).iter().all(|g| close(*g, 125 * MS)));
        assert_eq!(batch.requeue_after, Some(625 * MS));
        // Two live workers: each takes 4/s.
        limiter.set_live_workers(2);
        let later = limiter.reserve_batch(4, 10, 3).await;
        assert_eq!(later.slots.len(), 3);
        assert!(gaps(&later.slots).iter().all(|g| close(*g, 250 * MS)));
    }

    #[tokio::test]
    async fn rate_limit_a_page_whose_state_vanished_starts_after_what_was_booked() {
        let (limiter, prefix) = shared(2_000);
        let batch = limiter.reserve_batch(5, 100, 30).await;
        let last = batch.slots[29];
        // Redis restarted empty, was flushed, or evicted the key.
        redis(&["DEL", &format!("{prefix}:rl:5:slot")]).await;
        let next = limiter.reserve_batch(5, 100, 1).await;
        assert!(
            next.slots[0] + SLACK >= last + 10 * MS,
            "the next slot comes after the booked ones, not now: {:?} after the last",
            next.slots[0].saturating_duration_since(last)
        );
    }

    #[tokio::test]
    async fn rate_limit_workers_missing_from_redis_leave_room_for_their_fallback_share() {
        let (alone, prefix) = shared(2_000);
        alone.set_live_workers(2);
        // The other live worker has not used Redis within the lease: it may be on its fallback
        // at 40% of the rate, so Redis hands out 60%.
        let slots = alone.reserve_batch(6, 100, 3).await.slots;
        assert!(
            gaps(&slots).iter().all(|g| close(*g, 16_667 * MS / 1_000)),
            "{:?}",
            gaps(&slots)
        );
        let other = limiter("redis://127.0.0.1:6379", &prefix, 2_000);
        other.set_live_workers(2);
        let slots = other.reserve_batch(6, 100, 3).await.slots;
        assert!(gaps(&slots).iter().all(|g| close(*g, 10 * MS)));
    }

    #[tokio::test]
    async fn rate_limit_switching_to_the_fallback_and_back_adds_nothing_to_what_is_booked() {
        let (limiter, prefix) = shared(5_000);
        let booked = limiter.reserve_batch(7, 100, 10).await.slots;
        // Redis fails: the fallback starts a presence lease after the last booked slot.
        limiter.redis_failed(&(redis::ErrorKind::Io, "test").into());
        assert!(!limiter.is_shared());
        let local = limiter.reserve_batch(7, 100, 4).await.slots;
        assert_eq!(local.len(), 4);
        assert!(local[0] + SLACK >= booked[9] + PRESENCE_LEASE);
        // Redis is back, empty: its first slot comes after the fallback's.
        redis(&["DEL", &format!("{prefix}:rl:7:slot")]).await;
        limiter.local.lock().unwrap().redis_down_until = None;
        let back = limiter.reserve_batch(7, 100, 1).await.slots;
        assert!(back[0] + SLACK >= local[3] + 10 * MS);
    }

    #[test]
    fn rate_limit_one_step_grants_a_prefix_and_moves_on_by_it_only() {
        let step = Step {
            interval: 10,
            burst: 0,
            max_wait: 25,
            n: 5,
        };
        assert_eq!(
            gcra(0, 0, 100, step),
            Granted {
                waits: vec![0, 10, 20],
                refused: Some(30),
                tat: 130
            }
        );
        // The floor (what the caller booked) wins over an older state, the state over an
        // older floor.
        assert_eq!(gcra(100, 115, 100, step).waits, vec![15, 25]);
        assert_eq!(gcra(115, 105, 100, step).waits, vec![15, 25]);
        // A burst lets an idle Page's first sends go early, never before now.
        let burst = Step { burst: 20, ..step };
        assert_eq!(gcra(110, 0, 100, burst).waits, vec![0, 0, 10, 20]);
    }
}
