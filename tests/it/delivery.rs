//! Delivery that survives Facebook: retries with backoff, the shared per-Page rate limit, Redis
//! failure, Page halts, unreachable people, ambiguous sends, campaign control and fairness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use moonengage_core::campaigns::{self, CampaignState};
use moonengage_sandbox::{ErrorSpec, Faults, MessageFilter, PsidFault, RandomFault};
use nix::sys::signal::Signal;

use crate::helpers::{
    Harness, Person, Process, RedisProxy, RedisServer, TestDb, busiest, wait_completed,
};

const TEMPLATE: &str = "Hello {{first_name default=\"there\"}}";

fn people(n: usize, prefix: &str) -> Vec<Person> {
    (0..n)
        .map(|i| Person::in_window(&format!("{prefix}{i}")))
        .collect()
}

async fn count(h: &Harness, sql: &'static str, campaign: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(campaign)
        .fetch_one(h.pool())
        .await
        .unwrap()
}

/// The 24-hour window has one definition, `in_messaging_window` (SQL): open until exactly 24
/// hours after the person's last message, closed from then on.
#[tokio::test]
async fn the_messaging_window_closes_exactly_24_hours_after_the_last_message() {
    let db = TestDb::new().await;
    // One statement: now() is the same instant in every call.
    let (now, just_inside, exactly_24h, older): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT in_messaging_window(now()),
                in_messaging_window(now() - interval '24 hours' + interval '1 microsecond'),
                in_messaging_window(now() - interval '24 hours'),
                in_messaging_window(now() - interval '25 hours')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (now, just_inside, exactly_24h, older),
        (true, true, false, false)
    );
}

/// The window function is inlined into the queries that call it, so an index on
/// `last_interaction_at` still serves them and no function call runs per row.
#[tokio::test]
async fn the_messaging_window_is_inlined_by_the_planner() {
    let db = TestDb::new().await;
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (VERBOSE, COSTS OFF)
         SELECT id FROM subscribers WHERE in_messaging_window(last_interaction_at)",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        !plan.contains("in_messaging_window"),
        "not inlined:\n{plan}"
    );
    assert!(plan.contains("last_interaction_at >"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_on_30_percent_of_first_attempts_still_reach_everyone_exactly_once() {
    let mut h = Harness::new().await;
    h.sandbox.set_faults(Faults {
        random: vec![RandomFault {
            error: ErrorSpec::new(1200),
            rate: 0.3,
            first_attempt_only: true,
        }],
        ..Faults::default()
    });
    let page = h.add_page("1001").await;
    h.seed(page, "1001", &people(400, "T")).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (400, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (400, 0));
    assert!(
        stats.by_page["1001"]
            .rejected
            .get("1200")
            .copied()
            .unwrap_or(0)
            >= 60,
        "about 30% of first attempts were refused: {:?}",
        stats.by_page["1001"].rejected
    );

    // Each retry waited out its backoff (base 100 ms, so at least 50 ms with jitter) and the
    // waits differ: retries are spread, not synchronised.
    let waits: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM updated_at - created_at)::float8 FROM deliveries
         WHERE campaign_id = $1 AND attempts > 1",
    )
    .bind(campaign)
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(waits.len() >= 60, "{} retried", waits.len());
    assert!(
        waits.iter().all(|w| *w >= 0.05),
        "a retry came before its backoff: {waits:?}"
    );
    let mean = waits.iter().sum::<f64>() / waits.len() as f64;
    let spread =
        (waits.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / waits.len() as f64).sqrt();
    assert!(
        spread > 0.005,
        "retries are jittered (std dev {spread:.4} s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_sharing_the_redis_limiter_stay_under_the_page_limit() {
    let h = Harness::new().await;
    h.sandbox.set_rate_limit(300);
    let page = h.add_page("1101").await;
    h.seed(page, "1101", &people(1_500, "R")).await;
    let mut env = h.process_env();
    // Every job due at once: only the shared limiter stands between the workers and the 300/s.
    env.push(("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()));
    let _workers: Vec<Process> = (0..3).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    let started = Instant::now();
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(60)).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!((done.sent, done.failed), (1_500, 0));
    let stats = h.sandbox.stats();
    let page_stats = &stats.by_page["1101"];
    assert!(
        page_stats.rejected.is_empty(),
        "no 613: {:?}",
        page_stats.rejected
    );
    assert!(
        page_stats.max_per_second < 300,
        "max {} in a second",
        page_stats.max_per_second
    );
    assert!(
        elapsed > 5.0,
        "1,500 at 250/s take about 6 s, took {elapsed:.1} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_campaign_neither_stops_nor_unbounds_sending() {
    let h = Harness::new().await;
    let mut redis = RedisServer::start().await;
    let page = h.add_page("1201").await;
    h.seed(page, "1201", &people(2_000, "D")).await;
    let mut env = h.process_env();
    env.push(("REDIS_URL".into(), redis.url()));
    env.push(("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()));
    let mut workers: Vec<Process> = (0..2).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(400).await;
    redis.stop().await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(90)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (2_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (2_000, 0));
    // Bounded: at most 300/s over any 2 s (one second alone is at the mercy of this busy test
    // machine's scheduling; without a limit the workers send thousands per second).
    let busiest = busiest(&h.received_times(), 2_000);
    assert!(busiest <= 600, "{busiest} messages in the busiest 2 s");
    for worker in &mut workers {
        assert!(
            worker.child.try_wait().unwrap().is_none(),
            "no worker crashed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_page_is_paused_and_everyone_still_gets_one_message() {
    let mut h = Harness::new().await;
    h.sandbox.set_rate_limit(40);
    h.settings.rate_limit.pause_secs = 1;
    h.settings.scheduler.pace_fanout = false;
    let page = h.add_page("1301").await;
    h.seed(page, "1301", &people(200, "L")).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let done = h.wait_completed(campaign, Duration::from_secs(90)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (200, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (200, 0));
    assert!(
        stats.by_page["1301"].rejected.contains_key("613"),
        "the sandbox did rate-limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_page_token_halts_only_that_page() {
    let mut h = Harness::new().await;
    h.sandbox.set_faults(Faults {
        by_page: HashMap::from([("1401".to_owned(), ErrorSpec::new(190).with_subcode(463))]),
        ..Faults::default()
    });
    let bad = h.add_page("1401").await;
    let good = h.add_page("1402").await;
    h.seed(bad, "1401", &people(50, "B")).await;
    h.seed(good, "1402", &people(50, "G")).await;
    let bad_campaign = h.campaign(bad, TEMPLATE).await;
    let good_campaign = h.campaign(good, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let done = h
        .wait_completed(good_campaign, Duration::from_secs(60))
        .await;
    assert_eq!(done.sent, 50);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status, halted_reason FROM pages WHERE id = $1")
            .bind(bad)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("halted", Some("page_fatal"))
    );
    let progress = campaigns::progress(h.pool(), h.workspace_id, bad_campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(progress.state, CampaignState::Paused);
    assert_eq!(progress.sent, 0);
    let from_bad = h.sandbox.messages(&MessageFilter {
        page_id: Some("1401".into()),
        psid: None,
    });
    assert!(from_bad.is_empty());
    let attempts = h.sandbox.stats().by_page["1401"]
        .rejected
        .get("190")
        .copied()
        .unwrap_or(0);
    assert!(
        attempts < 50,
        "the Page stopped being tried once halted ({attempts} calls)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_person_is_marked_unreachable_and_the_next_campaign_skips_them() {
    let mut h = Harness::new().await;
    let page = h.add_page("1501").await;
    let folks = people(10, "U");
    h.seed(page, "1501", &folks).await;
    h.sandbox.set_faults(Faults {
        by_psid: HashMap::from([(
            folks[3].psid.clone(),
            PsidFault::Error(ErrorSpec {
                is_transient: Some(false),
                ..ErrorSpec::new(551)
            }),
        )]),
        ..Faults::default()
    });
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let first = h.campaign(page, TEMPLATE).await;
    let done = h.wait_completed(first, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.failed), (9, 1));
    let second = h.campaign(page, TEMPLATE).await;
    let done = h.wait_completed(second, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.skipped, done.failed), (9, 1, 0));
    let reason = count(
        &h,
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND reason = 'unreachable'",
        second,
    )
    .await;
    assert_eq!(reason, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_times_out_after_being_written_is_unknown_and_never_resent() {
    let mut h = Harness::new().await;
    h.settings.messenger.request_timeout_ms = 800;
    let page = h.add_page("1601").await;
    let folks = people(5, "A");
    h.seed(page, "1601", &folks).await;
    h.sandbox.set_faults(Faults {
        by_psid: HashMap::from([(
            folks[0].psid.clone(),
            PsidFault::Timeout {
                hang: Duration::from_secs(3),
            },
        )]),
        ..Faults::default()
    });
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.unknown), (4, 1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to_them = h.sandbox.messages(&MessageFilter {
        page_id: None,
        psid: Some(folks[0].psid.clone()),
    });
    assert_eq!(to_them.len(), 1, "written once, never resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_stops_sending_and_resuming_finishes_with_one_message_each() {
    let mut h = Harness::new().await;
    let page = h.add_page("1701").await;
    h.seed(page, "1701", &people(1_000, "P")).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    h.wait_received(150).await;
    campaigns::pause(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let at_pause = h.sandbox.stats().received_total;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        h.sandbox.stats().received_total,
        at_pause,
        "nothing is sent while paused"
    );
    assert!(at_pause < 1_000);
    campaigns::resume(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap();
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (1_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (1_000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_removes_the_rest_and_the_counters_add_up() {
    let mut h = Harness::new().await;
    let page = h.add_page("1801").await;
    h.seed(page, "1801", &people(1_000, "C")).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    h.wait_received(100).await;
    campaigns::cancel(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let progress = campaigns::progress(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(progress.state, CampaignState::Cancelled);
    assert!(progress.sent < 1_000);
    assert_eq!(progress.sent + progress.skipped, 1_000, "{progress:?}");
    assert_eq!(h.sandbox.stats().received_total as i64, progress.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_campaign_does_not_starve_a_small_one_of_another_page() {
    let mut h = Harness::new().await;
    let big = h.add_page("1901").await;
    let small = h.add_page("1902").await;
    h.seed(big, "1901", &people(20_000, "Big")).await;
    h.seed(small, "1902", &people(100, "Small")).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let big_campaign = h.campaign(big, TEMPLATE).await;
    h.wait_received(500).await;
    let started = Instant::now();
    let small_campaign = h.campaign(small, TEMPLATE).await;
    let done = h
        .wait_completed(small_campaign, Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    assert_eq!(done.sent, 100);
    assert!(
        took < Duration::from_secs(5),
        "the small campaign took {took:?}"
    );
    let big_progress = campaigns::progress(h.pool(), h.workspace_id, big_campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        big_progress.state,
        CampaignState::Running,
        "the big one was still going"
    );
    campaigns::cancel(h.pool(), h.workspace_id, big_campaign)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_worker_leaves_no_one_messaged_twice() {
    let h = Harness::new().await;
    h.sandbox.set_latency(Duration::from_millis(20));
    let page = h.add_page("2001").await;
    h.seed(page, "2001", &people(800, "K")).await;
    let env = h.process_env();
    let mut victim = Process::start("worker", &env);
    let _survivor = Process::start("worker", &env);
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(200).await;
    victim.signal(Signal::SIGKILL);
    victim.wait(Duration::from_secs(10)).await;
    // Its jobs come back after its heartbeat expires (5 s x 3 by default).
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(90)).await;
    assert_eq!(done.sent + done.unknown, 800);
    assert_eq!(done.failed, 0);
    let stats = h.sandbox.stats();
    assert_eq!(stats.duplicates, 0, "no one was messaged twice");
    // An interrupted send is `unknown`: it may or may not have reached the sandbox.
    assert!(stats.received_total as i64 >= done.sent);
    assert!(stats.received_total as i64 <= done.sent + done.unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_near_its_facebook_budget_slows_to_half_its_rate() {
    let mut h = Harness::new().await;
    // The sandbox reports usage as the share of its 100/s used: a Page sending at 95/s reads
    // 95%, past the 90% at which the limiter halves the Page's rate.
    h.sandbox.set_rate_limit(100);
    h.settings.scheduler.pace_fanout = false;
    let page = h.add_page("2101").await;
    sqlx::query("UPDATE pages SET send_rate = 95 WHERE id = $1")
        .bind(page)
        .execute(h.pool())
        .await
        .unwrap();
    h.seed(page, "2101", &people(250, "S")).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker").await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.failed), (250, 0));
    let stats = h.sandbox.stats();
    assert!(
        stats.by_page["2101"].rejected.is_empty(),
        "{:?}",
        stats.by_page["2101"]
    );

    // After the first second (at the full rate, which reported 95%), at most half the rate.
    let times = h.received_times();
    let slowed = times[0] + 1_500;
    let later: Vec<u64> = times.iter().copied().filter(|t| *t >= slowed).collect();
    assert!(
        later.len() > 100,
        "most messages came after the slow-down began"
    );
    let busiest = busiest(&later, 1_000);
    assert!(
        busiest <= 55,
        "{busiest} messages in a second after slowing to 47.5/s"
    );
}

/// The Page rate of the limiter tests below, and the most the sandbox may count in any one
/// second of a Page's traffic: the rate plus 10% for this shared machine's scheduling noise.
/// Without a shared limit the workers add their shares (a burst is 1.3x to 1.8x the rate).
const PAGE_RATE: i32 = 150;
const MOST_IN_A_SECOND: usize = 165;

/// Unix time in ms, the clock of the sandbox's `received_at_ms`.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A Page sending at [`PAGE_RATE`] to `n` people, and the environment of processes that send
/// everything at once (fan-out unpaced: only the limiter stands between them and the sandbox).
async fn limited_page(h: &Harness, fb_page_id: &str, n: usize) -> (i64, Vec<(String, String)>) {
    let page = h.add_page(fb_page_id).await;
    sqlx::query("UPDATE pages SET send_rate = $2 WHERE id = $1")
        .bind(page)
        .bind(PAGE_RATE)
        .execute(h.pool())
        .await
        .unwrap();
    h.seed(page, fb_page_id, &people(n, "M")).await;
    let mut env = h.process_env();
    env.push(("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()));
    (page, env)
}

/// The busiest one-second window of each phase of a run (phases split at `marks`, unix ms), and
/// of the whole run (windows across a mark included), as the sandbox received the messages.
fn busiest_by_phase(times: &[u64], marks: &[u64]) -> (Vec<usize>, usize) {
    let mut bounds = vec![0];
    bounds.extend(marks.iter().map(|mark| times.partition_point(|t| t < mark)));
    bounds.push(times.len());
    let phases = bounds
        .windows(2)
        .map(|w| busiest(&times[w[0]..w[1]], 1_000))
        .collect();
    (phases, busiest(times, 1_000))
}

/// Where the busiest second of a run begins, in seconds from its first message, and its
/// messages per 100 ms: for telling a burst of the limiter from a stall of this machine.
fn busiest_second_shape(times: &[u64]) -> String {
    let Some((start, _)) = times
        .iter()
        .enumerate()
        .map(|(i, start)| (*start, times[i..].partition_point(|t| *t < start + 1_000)))
        .max_by_key(|(_, n)| *n)
    else {
        return "no messages".into();
    };
    let tenths: Vec<usize> = (0..10)
        .map(|k| {
            let from = start + k * 100;
            times.partition_point(|t| *t < from + 100) - times.partition_point(|t| *t < from)
        })
        .collect();
    format!(
        "at {:.1} s, per 100 ms {tenths:?}",
        (start - times[0]) as f64 / 1_000.0
    )
}

/// Waits until the limiter's keys are back in a Redis that lost them: the workers use it again.
async fn wait_keys(redis: &RedisServer) {
    let started = Instant::now();
    loop {
        if let Ok(redis::Value::Int(keys)) = redis.command(&["DBSIZE"]).await
            && keys > 0
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the workers never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_empty_mid_campaign_never_lets_the_page_burst() {
    let h = Harness::alone().await;
    let mut redis = RedisServer::start().await;
    let (page, mut env) = limited_page(&h, "1211", 4_000).await;
    env.push(("REDIS_URL".into(), redis.url()));
    let _workers: Vec<Process> = (0..2).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(1_300).await;
    let killed = unix_ms();
    redis.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    redis.restart().await;
    let restarted = unix_ms();
    wait_keys(&redis).await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (4_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (4_000, 0));
    let times = h.received_times();
    let (phases, overall) = busiest_by_phase(&times, &[killed, restarted]);
    eprintln!(
        "busiest second before/during/after the outage: {phases:?}, overall {overall} ({})",
        busiest_second_shape(&times)
    );
    assert!(
        times.len() - times.partition_point(|t| *t < restarted) > 500,
        "the campaign went on after Redis came back"
    );
    assert!(
        overall <= MOST_IN_A_SECOND,
        "{overall} messages in a second at {PAGE_RATE}/s (before/during/after: {phases:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_redis_mid_campaign_never_lets_the_page_burst() {
    let h = Harness::alone().await;
    let redis = RedisServer::start().await;
    let (page, mut env) = limited_page(&h, "1221", 4_000).await;
    env.push(("REDIS_URL".into(), redis.url()));
    let _workers: Vec<Process> = (0..2).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    let mut flushed = Vec::new();
    for at in [1_300, 2_600] {
        h.wait_received(at).await;
        redis.command(&["FLUSHALL"]).await.unwrap();
        flushed.push(unix_ms());
    }
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (4_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (4_000, 0));
    let times = h.received_times();
    let (phases, overall) = busiest_by_phase(&times, &flushed);
    eprintln!(
        "busiest second before/between/after the flushes: {phases:?}, overall {overall} ({})",
        busiest_second_shape(&times)
    );
    assert!(
        overall <= MOST_IN_A_SECOND,
        "{overall} messages in a second at {PAGE_RATE}/s (before/between/after: {phases:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_losing_redis_while_two_keep_it_never_lets_the_page_burst() {
    let h = Harness::alone().await;
    let redis = RedisServer::start().await;
    let proxy = RedisProxy::start(redis.port).await;
    let (page, env) = limited_page(&h, "1231", 4_000).await;
    let with_redis = |url: String| {
        let mut env = env.clone();
        env.push(("REDIS_URL".into(), url));
        env
    };
    let _cut_off = Process::start("worker", &with_redis(proxy.url()));
    let _others: Vec<Process> = (0..2)
        .map(|_| Process::start("worker", &with_redis(redis.url())))
        .collect();
    let _scheduler = Process::start("scheduler", &with_redis(redis.url()));
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(1_300).await;
    let cut = unix_ms();
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let connections = proxy.connections();
    proxy.mend();
    let mended = unix_ms();
    let started = Instant::now();
    while proxy.connections() == connections {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the cut-off worker never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (4_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (4_000, 0));
    let times = h.received_times();
    let (phases, overall) = busiest_by_phase(&times, &[cut, mended]);
    eprintln!(
        "busiest second before/during/after the split: {phases:?}, overall {overall} ({})",
        busiest_second_shape(&times)
    );
    assert!(
        overall <= MOST_IN_A_SECOND,
        "{overall} messages in a second at {PAGE_RATE}/s (before/during/after: {phases:?})"
    );
}
