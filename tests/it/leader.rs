//! The leader services: they run only while their scheduler holds the leader lock, stop when it
//! loses it, and one failing service does not stop the others.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{Harness, Person, wait_completed};

const TEMPLATE: &str = "Hi {{first_name default=\"there\"}}, {{page_name}} has news!";

/// The scheduler leader's advisory lock key ("MESCHEDU", scheduler/src/leader.rs).
const LEADER_LOCK: i64 = 0x4d45_5343_4845_4455;

/// Backends of this database, other than the asking one, that hold the leader lock.
async fn lock_holders(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
           AND l.pid <> pg_backend_pid()",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until some scheduler leads.
async fn wait_for_a_leader(pool: &PgPool) {
    let started = Instant::now();
    while lock_holders(pool).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no scheduler took the leader lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes the leader lock away from the scheduler: its lock connection is terminated and `rival`
/// takes the lock before the scheduler can take it again.
async fn steal_leadership(pool: &PgPool, rival: &mut PgConnection) {
    let started = Instant::now();
    loop {
        for pid in lock_holders(pool).await {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(pool)
                .await
                .unwrap();
        }
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *rival)
            .await
            .unwrap();
        if taken {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "could not take the leader lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn campaign_state(pool: &PgPool, campaign: i64) -> String {
    sqlx::query_scalar("SELECT state FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_loses_the_lock_stops_its_services_until_it_leads_again() {
    let mut h = Harness::new().await;
    let page = h.add_page("931").await;
    h.seed(page, "931", &[Person::in_window("Ann")]).await;
    h.start_scheduler().await;
    wait_for_a_leader(h.pool()).await;

    let mut rival = PgConnection::connect(&h.db.url).await.unwrap();
    steal_leadership(h.pool(), &mut rival).await;
    // The scheduler notices at its next leadership check (every 100 ms here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    // Ten fan-out intervals: a scheduler still running its services would have started it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(campaign_state(h.pool(), campaign).await, "scheduled");

    rival.close().await.unwrap();
    h.start_worker("leader-w1").await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(30)).await;
    assert_eq!((done.state.as_str(), done.sent), ("completed", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_does_not_stop_the_others() {
    let mut h = Harness::new().await;
    h.settings.email.dsr_due_check_secs = 1;
    h.settings.retention.interval_ms = 200;
    let page = h.add_page("932").await;
    h.seed(page, "932", &[Person::in_window("Bo")]).await;
    // The due-soon service (and the incident gauge) fail on every run from now on.
    sqlx::query("ALTER TABLE incidents RENAME TO incidents_gone")
        .execute(h.pool())
        .await
        .unwrap();
    // What retention removes: a webhook event processed two days ago.
    let event: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_events
           (mid_hash, page_fb_id, kind, intent, event_at, received_at, processed_at)
         VALUES ($1, '932', 'message', 'none', now() - interval '2 days',
                 now() - interval '2 days', now() - interval '2 days')
         RETURNING id",
    )
    .bind(rand::random::<[u8; 32]>().to_vec())
    .fetch_one(h.pool())
    .await
    .unwrap();

    h.start_scheduler().await;
    h.start_worker("leader-w2").await;
    let campaign = h.campaign(page, TEMPLATE).await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(30)).await;
    assert_eq!((done.state.as_str(), done.sent), ("completed", 1));
    let started = Instant::now();
    loop {
        let left: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_events WHERE id = $1)")
                .bind(event)
                .fetch_one(h.pool())
                .await
                .unwrap();
        if !left {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "retention did not run while the due-soon service failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
