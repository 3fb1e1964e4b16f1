//! Against the Redis at 127.0.0.1:6379 (as the integration tests), each test under a key
//! prefix of its own.

use secrecy::SecretString;

use super::gcra::{Granted, Step, gcra};
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
