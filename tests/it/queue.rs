//! The queue itself: leases of a killed worker, retries and deferrals on the same row, every
//! kind through the generic table, and erasure's look-ups by index.

use std::fmt::Debug;
use std::time::Duration;

use moonengage_core::jobs::{Cause, NotifyJob, NotifyKind};
use moonengage_core::profile::ProfileJob;
use moonengage_ops::alerts::AdminEvent;
use moonengage_privacy::dsr::DsrJob;
use moonengage_privacy::export_link::{ExportLinkJob, LinkCause};
use moonengage_privacy::policy::PolicyNoticeJob;
use moonengage_privacy::rotation::RotateJob;
use moonengage_queue::backend::Source;
use moonengage_queue::jobs::{self, Jobs, Settled};
use moonengage_queue::sends::{self, Outcome, Sends};
use moonengage_queue::{Job, JobError};
use moonengage_scheduler::services::fanout;
use nix::sys::signal::Signal;
use sqlx::PgPool;

use crate::helpers::{Harness, OwnPostgres, Person, Process, fan_out_all, wait_completed};

const TEMPLATE: &str = "Hello {{first_name default=\"there\"}}";
const LEASE: Duration = Duration::from_secs(30);

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| Person::in_window(&format!("Q{i}")))
        .collect()
}

/// A campaign of `n` people, started and fanned out (unpaced) without a scheduler.
async fn fanned_out(h: &Harness, fb_page: &str, n: usize) -> i64 {
    let page = h.add_page(fb_page).await;
    h.seed(page, fb_page, &people(n)).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    assert_eq!(fanout::start_due(h.pool()).await.unwrap(), 1);
    fan_out_all(h.pool(), campaign, 10_000, false).await;
    campaign
}

async fn row(pool: &PgPool, campaign: i64) -> (String, i32, f64, Option<String>) {
    sqlx::query_as(
        "SELECT status, attempts, extract(epoch FROM run_at - now())::float8, reason
         FROM deliveries WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_settles_its_claims_unknown_and_everyone_else_gets_one_message() {
    let h = Harness::new().await;
    // Slow sends, so the victim holds a batch of claimed rows when it dies.
    h.sandbox.set_latency(Duration::from_millis(400));
    let page = h.add_page("9101").await;
    h.seed(page, "9101", &people(400)).await;
    let mut env = h.process_env();
    env.extend([
        ("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()),
        ("MOONENGAGE__QUEUE__BATCH_SIZE".into(), "40".into()),
        ("MOONENGAGE__QUEUE__HEARTBEAT_SECS".into(), "1".into()),
        ("MOONENGAGE__QUEUE__MISSED_HEARTBEATS".into(), "2".into()),
    ]);
    let mut victim = Process::start("worker", &env);
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(20).await;
    victim.signal(Signal::SIGKILL);
    victim.wait(Duration::from_secs(10)).await;
    // What the dead worker held: claimed, maybe sent, never settled.
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT subscriber_id FROM deliveries
         WHERE campaign_id = $1 AND status = 'sending' ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(!held.is_empty(), "the worker died holding claimed sends");
    let _survivor = Process::start("worker", &env);
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(90)).await;

    let unknown: Vec<i64> = sqlx::query_scalar(
        "SELECT subscriber_id FROM deliveries
         WHERE campaign_id = $1 AND status = 'unknown' AND reason = 'interrupted' ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(unknown, held, "exactly the expired leases settled unknown");
    assert_eq!(done.unknown as usize, held.len());
    assert_eq!(
        done.sent as usize,
        400 - held.len(),
        "everyone else was sent"
    );
    let stats = h.sandbox.stats();
    assert_eq!(stats.duplicates, 0, "nobody was sent twice");
    assert!(stats.received_total as i64 >= done.sent);
    assert!(stats.received_total as i64 <= done.sent + done.unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_and_a_deferral_move_the_same_row_and_a_deferral_spends_no_attempt() {
    let h = Harness::new().await;
    let campaign = fanned_out(&h, "9201", 1).await;
    let sends = Sends::new(h.pool().clone(), "it-sends", LEASE);
    let claim = |expected_attempt: i32| {
        let sends = sends.clone();
        async move {
            let claimed = sends.claim(10).await.unwrap();
            assert_eq!(claimed.len(), 1);
            let send = &claimed[0].item;
            assert_eq!(send.attempt, expected_attempt);
            (send.campaign_id, send.subscriber_id)
        }
    };
    let settle = |(campaign_id, subscriber_id): (i64, i64), outcome: Outcome| {
        let sends = sends.clone();
        async move {
            sends
                .settle(&[sends::Settled {
                    campaign_id,
                    subscriber_id,
                    outcome,
                }])
                .await
                .unwrap();
        }
    };
    let make_due = || async {
        sqlx::query("UPDATE deliveries SET run_at = now() WHERE campaign_id = $1")
            .bind(campaign)
            .execute(h.pool())
            .await
            .unwrap();
    };

    let key = claim(1).await;
    assert!(sends.claim(10).await.unwrap().is_empty(), "claimed once");
    settle(
        key,
        Outcome::Retry {
            after: Duration::from_secs(60),
            spend_attempt: true,
            reason: "transient".into(),
        },
    )
    .await;
    let (status, attempts, due_in, reason) = row(h.pool(), campaign).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    assert!(due_in > 50.0, "the retry moved the run time: {due_in}");
    assert_eq!(reason.as_deref(), Some("transient"));
    assert!(sends.claim(10).await.unwrap().is_empty(), "not due yet");

    make_due().await;
    let key = claim(2).await;
    settle(
        key,
        Outcome::Retry {
            after: Duration::from_secs(30),
            spend_attempt: false,
            reason: "rate_limited".into(),
        },
    )
    .await;
    let (status, attempts, due_in, _) = row(h.pool(), campaign).await;
    assert_eq!(
        (status.as_str(), attempts),
        ("queued", 1),
        "no attempt spent"
    );
    assert!(due_in > 20.0);

    make_due().await;
    let key = claim(2).await;
    settle(
        key,
        Outcome::Sent {
            message_id: "m".into(),
        },
    )
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "one row all along");
    let progress = moonengage_core::campaigns::progress(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((progress.sent, progress.recipients), (1, 1));

    // The generic table: the same rules on the same row.
    jobs::enqueue(h.pool(), &DsrJob { request_id: 5 }, 3)
        .await
        .unwrap();
    let dsr = Jobs::<DsrJob>::new(h.pool().clone(), "it-jobs", h.settings.queue.lease());
    let settings = h.settings.queue.clone();
    let claimed = dsr.claim(10).await.unwrap().remove(0).item;
    dsr.settle(&[Settled::of(
        claimed.id,
        claimed.attempt,
        claimed.max_attempts,
        &Err(JobError::defer(Duration::from_secs(30), "rate_limiter")),
        &settings,
    )])
    .await
    .unwrap();
    let (id, status, attempts, due_in): (i64, String, i32, f64) = sqlx::query_as(
        "SELECT id, status, attempts, extract(epoch FROM run_at - now())::float8
         FROM jobs WHERE kind = 'dsr'",
    )
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!((id, status.as_str(), attempts), (claimed.id, "queued", 0));
    assert!(due_in > 20.0);
    sqlx::query("UPDATE jobs SET run_at = now()")
        .execute(h.pool())
        .await
        .unwrap();
    let claimed = dsr.claim(10).await.unwrap().remove(0).item;
    assert_eq!(claimed.attempt, 1);
    dsr.settle(&[Settled::of(
        claimed.id,
        claimed.attempt,
        claimed.max_attempts,
        &Err(JobError::Retry {
            after: None,
            spend_attempt: true,
            reason: "database".into(),
        }),
        &settings,
    )])
    .await
    .unwrap();
    let (count, attempts): (i64, i32) =
        sqlx::query_as("SELECT count(*), max(attempts) FROM jobs WHERE kind = 'dsr'")
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(
        (count, attempts),
        (1, 1),
        "a retry spends an attempt, same row"
    );
}

/// Queues `job`, claims it back and checks it is the same.
async fn round_trip<J: Job + PartialEq + Debug + Clone>(pool: &PgPool, job: J) {
    assert!(jobs::enqueue(pool, &job, 3).await.unwrap());
    assert!(
        !jobs::enqueue(pool, &job, 3).await.unwrap(),
        "{}: the same key is queued once",
        J::KIND
    );
    let claimed = Jobs::<J>::new(pool.clone(), "it-round-trip", Duration::from_secs(15))
        .claim(10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{}", J::KIND);
    assert_eq!(claimed[0].item.job, job);
    let (kind, subscriber): (String, Option<i64>) =
        sqlx::query_as("SELECT kind, subscriber_id FROM jobs WHERE id = $1")
            .bind(claimed[0].item.id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(kind, J::KIND);
    assert_eq!(subscriber, job.subscriber_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_round_trips_through_the_generic_table() {
    let h = Harness::new().await;
    let page = h.add_page("9301").await;
    h.seed(page, "9301", &people(1)).await;
    let subscriber: i64 = sqlx::query_scalar("SELECT id FROM subscribers")
        .fetch_one(h.pool())
        .await
        .unwrap();
    let pool = h.pool();
    round_trip(pool, DsrJob { request_id: 12 }).await;
    round_trip(
        pool,
        NotifyJob {
            subscriber_id: subscriber,
            kind: NotifyKind::Unsubscribed,
            cause: Cause::Event(13),
        },
    )
    .await;
    round_trip(pool, RotateJob::start(2)).await;
    round_trip(
        pool,
        AdminEvent::PageHalted {
            page_id: page,
            paused_campaigns: vec![1, 2],
            at_ms: 14,
        },
    )
    .await;
    round_trip(
        pool,
        ProfileJob {
            subscriber_id: subscriber,
        },
    )
    .await;
    round_trip(
        pool,
        PolicyNoticeJob {
            subscriber_id: subscriber,
            policy_version_id: 15,
            reply_to: Some(16),
        },
    )
    .await;
    for cause in [LinkCause::Reply(17), LinkCause::Reissue(18)] {
        round_trip(
            pool,
            ExportLinkJob {
                request_id: 19,
                subscriber_id: subscriber,
                cause,
            },
        )
        .await;
    }
}

/// Sequential scans of `deliveries` so far, as of this connection's last transaction.
async fn scans(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'deliveries'")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_person_finds_their_queued_sends_by_index_not_by_scanning_the_queue() {
    let h = Harness::new().await;
    let campaign = fanned_out(&h, "9401", 20_000).await;
    let target: i64 = sqlx::query_scalar(
        "SELECT subscriber_id FROM deliveries WHERE campaign_id = $1 ORDER BY 1 DESC LIMIT 1",
    )
    .bind(campaign)
    .fetch_one(h.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE deliveries")
        .execute(h.pool())
        .await
        .unwrap();
    let mut conn = h.pool().acquire().await.unwrap();
    let before = scans(&mut conn).await;
    let erased = sends::erase(&mut conn, target).await.unwrap();
    assert_eq!(erased, 1);
    let after = scans(&mut conn).await;
    assert_eq!(after, before, "erasure scanned the whole send queue");
    // And the campaign still adds up: the erased person counts as skipped.
    let (recipients, skipped): (i32, i32) =
        sqlx::query_as("SELECT recipients, skipped FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!((recipients, skipped), (20_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashing_during_outcome_flushes_loses_no_outcome() {
    let server = OwnPostgres::start().await;
    let h = Harness::on(&server).await;
    h.sandbox.set_latency(Duration::from_millis(5));
    let page = h.add_page("9501").await;
    h.seed(page, "9501", &people(3_000)).await;
    let mut env = h.process_env();
    env.push(("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()));
    let _workers: Vec<Process> = (0..2).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(500).await;
    server.crash_and_restart().await;
    // Our own pool lost its connections too: read progress until it answers again.
    let started = std::time::Instant::now();
    let done = loop {
        if let Ok(Some(progress)) =
            moonengage_core::campaigns::progress(h.pool(), h.workspace_id, campaign).await
            && progress.state == moonengage_core::campaigns::CampaignState::Completed
        {
            break progress;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the campaign did not complete after the crash"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = h.sandbox.stats();
    assert_eq!(stats.duplicates, 0, "nobody was sent twice");
    assert_eq!(done.failed, 0);
    assert_eq!(done.sent + done.unknown, 3_000, "every send has an outcome");
    // Every recorded `sent` reached the sandbox; an `unknown` may or may not have.
    assert!(stats.received_total as i64 >= done.sent);
    assert!(stats.received_total as i64 <= done.sent + done.unknown);
    let settled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE campaign_id = $1 AND status IN ('sent', 'unknown')",
    )
    .bind(campaign)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(settled, 3_000, "the counters match the rows");
}

/// A job held by a worker that stopped heartbeating (SIGKILLed) runs again as soon as the worker
/// has been silent for a heartbeat lease, not when the job's 5-minute lease runs out; one held
/// by a worker that heartbeats, or that has not registered yet, stays with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_silent_worker_is_taken_back_before_its_lease_ends() {
    let h = Harness::new().await;
    let silent = Duration::from_secs(2);
    for name in ["it-doomed", "it-other"] {
        sqlx::query("INSERT INTO queue_workers (name, kinds) VALUES ($1, ARRAY['dsr'])")
            .bind(name)
            .execute(h.pool())
            .await
            .unwrap();
    }
    jobs::enqueue(h.pool(), &DsrJob { request_id: 7 }, 3)
        .await
        .unwrap();
    let doomed = Jobs::<DsrJob>::new(h.pool().clone(), "it-doomed", silent);
    let other = Jobs::<DsrJob>::new(h.pool().clone(), "it-other", silent);
    let newcomer = Jobs::<DsrJob>::new(h.pool().clone(), "it-unregistered", silent);
    let first = doomed.claim(10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        other.claim(10).await.unwrap().is_empty(),
        "a live holder keeps its job"
    );

    jobs::enqueue(h.pool(), &DsrJob { request_id: 8 }, 3)
        .await
        .unwrap();
    assert_eq!(newcomer.claim(10).await.unwrap().len(), 1);
    sqlx::query("UPDATE queue_workers SET last_seen = now() - interval '10 seconds' WHERE name = 'it-doomed'")
        .execute(h.pool())
        .await
        .unwrap();
    let retaken = other.claim(10).await.unwrap();
    assert_eq!(
        retaken.len(),
        1,
        "only the silent worker's job is taken back"
    );
    assert_eq!(retaken[0].item.id, first[0].item.id);
    assert_eq!(retaken[0].item.attempt, 2);
}
