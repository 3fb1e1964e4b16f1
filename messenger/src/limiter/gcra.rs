//! The one definition of a slot, GCRA with a quantity, twice: in Rust for the in-process
//! fallback (`gcra`) and in Lua for Redis (`RESERVE`), line for line, so both paths grant the
//! same slots from the same state.

use std::time::Duration;

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
pub(super) const RESERVE: &str = r"
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

/// One GCRA step with a quantity, in µs on one clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    /// Time between two slots.
    pub(super) interval: i64,
    /// How much earlier than its slot time a send may go (the burst).
    pub(super) burst: i64,
    /// Longest wait granted.
    pub(super) max_wait: i64,
    /// Slots asked for.
    pub(super) n: usize,
}

/// What a step grants.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Granted {
    /// Wait of each granted slot from `now`.
    pub(super) waits: Vec<i64>,
    /// Wait the first refused slot would have had.
    pub(super) refused: Option<i64>,
    /// The state after the step: the next free slot.
    pub(super) tat: i64,
}

/// The one definition of a slot, for both paths (`RESERVE` is this, in Lua): the next free
/// slot is the latest of the state `tat`, the caller's `floor` (what it has booked) and `now`;
/// slot `k` of the batch comes `k` intervals after it, at most `burst` earlier but never before
/// now; slots are granted while their wait is within `max_wait`, and the state moves on by the
/// granted slots only (refused ones are requeued, and reserve again when they come back).
pub(super) fn gcra(tat: i64, floor: i64, now: i64, step: Step) -> Granted {
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
pub(super) fn interval_of(rate: u32) -> i64 {
    let rate = i64::from(rate.max(1));
    (1_000_000 + rate - 1) / rate
}

/// A duration in whole µs, saturating.
pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// µs as a duration; a negative count is no wait.
pub(super) fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}
