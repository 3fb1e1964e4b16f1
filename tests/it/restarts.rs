//! Restarts under fire, on a Postgres server of the test's own: worker and scheduler processes
//! that start before their database wait for it with backoff (logging the outage once), and a
//! campaign and data-subject requests under way when Postgres restarts complete with nothing
//! lost and nobody messaged twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moonengage_core::campaigns::{self, CampaignState, Progress};
use moonengage_privacy::catalog::{self, Erasure, Keyed};
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use sqlx::PgPool;

use crate::helpers::{Harness, OwnPostgres, Person, Process};

const TEMPLATE: &str = "Hello {{first_name default=\"there\"}}";
const UNREACHABLE: &str = "database unreachable, retrying with backoff";
const REACHABLE: &str = "database reachable again";

fn people(n: usize) -> Vec<Person> {
    (0..n).map(|_| Person::in_window("Ada")).collect()
}

/// Our processes' environment, logging at `info` (the line saying the database is back), and
/// giving up a connection attempt after 2 s so an outage is noticed quickly.
fn env(h: &Harness) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = h
        .process_env()
        .into_iter()
        .filter(|(key, _)| key != "RUST_LOG")
        .collect();
    env.push(("RUST_LOG".into(), "info".into()));
    env.push((
        "MOONENGAGE__DATABASE__ACQUIRE_TIMEOUT_SECS".into(),
        "2".into(),
    ));
    env.push(("MOONENGAGE__SCHEDULER__PACE_FANOUT".into(), "false".into()));
    env
}

fn lines_with(output: &Mutex<Vec<String>>, needle: &str) -> usize {
    output
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

/// Waits for a campaign to complete, reading through a pool that may have lost its
/// connections to a restart.
async fn completed(pool: &PgPool, workspace: i64, campaign: i64, within: Duration) -> Progress {
    let started = Instant::now();
    loop {
        if let Ok(Some(progress)) = campaigns::progress(pool, workspace, campaign).await
            && progress.state == CampaignState::Completed
        {
            return progress;
        }
        assert!(
            started.elapsed() < within,
            "campaign {campaign} did not complete within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls a count through a pool that may have lost its connections, until it is `expected`.
async fn count_becomes(pool: &PgPool, sql: &'static str, bind: i64, expected: i64) {
    let started = Instant::now();
    loop {
        let count: Result<i64, _> = sqlx::query_scalar(sql).bind(bind).fetch_one(pool).await;
        if count.as_ref().is_ok_and(|count| *count == expected) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{sql} ({bind}) is {count:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every recipient got the campaign at most once, and every delivery has an outcome.
async fn settled_once(h: &Harness, campaign: i64, recipients: i64) -> Progress {
    let done = completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(180)).await;
    let mut per_psid: HashMap<String, usize> = HashMap::new();
    for message in h
        .sandbox
        .messages(&moonengage_sandbox::MessageFilter::default())
    {
        *per_psid.entry(message.psid).or_default() += 1;
    }
    let twice = per_psid.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "people messaged more than once");
    assert_eq!(
        done.sent + done.unknown + done.failed + done.skipped,
        recipients,
        "every recipient has an outcome: {done:?}"
    );
    let unsettled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries
         WHERE campaign_id = $1 AND status NOT IN ('sent', 'unknown', 'failed', 'skipped')",
    )
    .bind(campaign)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(unsettled, 0, "a delivery was left without an outcome");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(rows, recipients, "one delivery row per recipient");
    assert!(h.sandbox.stats().received_total as i64 <= done.sent + done.unknown);
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_scheduler_wait_for_their_database_and_say_so_once() {
    let server = OwnPostgres::start().await;
    let h = Harness::on(&server).await;
    let page = h.add_page("9601").await;
    h.seed(page, "9601", &people(50)).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    server.stop().await;

    let env = env(&h);
    let worker_log = Arc::new(Mutex::new(Vec::new()));
    let scheduler_log = Arc::new(Mutex::new(Vec::new()));
    let mut worker = Process::start_logged("worker", &env, &worker_log);
    let mut scheduler = Process::start_logged("scheduler", &env, &scheduler_log);
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (name, process, log) in [
        ("worker", &mut worker, &worker_log),
        ("scheduler", &mut scheduler, &scheduler_log),
    ] {
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "the {name} exited without its database: {:?}",
            log.lock().unwrap()
        );
        assert_eq!(
            lines_with(log, UNREACHABLE),
            1,
            "the {name} says the database is unreachable once: {:?}",
            log.lock().unwrap()
        );
    }

    server.start_again().await;
    let done = settled_once(&h, campaign, 50).await;
    assert_eq!(done.sent, 50);
    assert!(lines_with(&scheduler_log, "became the scheduler leader") >= 1);
    for (name, log) in [("worker", &worker_log), ("scheduler", &scheduler_log)] {
        assert_eq!(lines_with(log, UNREACHABLE), 1, "{name}");
        assert_eq!(
            lines_with(log, REACHABLE),
            1,
            "the {name} says once that the database is back: {:?}",
            log.lock().unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_a_postgres_restart_with_nobody_messaged_twice() {
    let server = OwnPostgres::start().await;
    let h = Harness::on(&server).await;
    h.sandbox.set_latency(Duration::from_millis(5));
    let page = h.add_page("9602").await;
    h.seed(page, "9602", &people(3_000)).await;
    let env = env(&h);
    let _workers: Vec<Process> = (0..2).map(|_| Process::start("worker", &env)).collect();
    let _scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    h.wait_received(500).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again().await;
    let done = settled_once(&h, campaign, 3_000).await;
    assert_eq!(done.failed + done.skipped, 0, "{done:?}");
}

/// A seeded person's subscriber id.
async fn id_of(h: &Harness, page: i64, person: &Person) -> i64 {
    sqlx::query_scalar("SELECT id FROM subscribers WHERE page_id = $1 AND psid_index = $2")
        .bind(page)
        .bind(h.keyring.blind_index("9603", &person.psid))
        .fetch_one(h.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_subject_requests_complete_across_a_postgres_restart() {
    let server = OwnPostgres::start().await;
    let h = Harness::on(&server).await;
    h.sandbox.set_latency(Duration::from_millis(300));
    let page = h.add_page("9603").await;
    let (erased, exported) = (Person::in_window("Eve"), Person::in_window("Xan"));
    h.seed(page, "9603", &[erased.clone(), exported.clone()])
        .await;
    let (erased_id, exported_id) = (
        id_of(&h, page, &erased).await,
        id_of(&h, page, &exported).await,
    );
    let _worker = Process::start("worker", &env(&h));
    count_becomes(
        h.pool(),
        "SELECT count(*) + 0 * $1 FROM queue_workers",
        0,
        1,
    )
    .await;

    let mut conn = h.pool().acquire().await.unwrap();
    for (kind, person, id) in [
        (DsrType::Erasure, &erased, erased_id),
        (DsrType::Export, &exported, exported_id),
    ] {
        let subject = Subject {
            page_id: page,
            subscriber_id: Some(id),
            psid: Some(person.psid.clone()),
        };
        dsr::file(&mut conn, &h.keyring, kind, Channel::Admin, &subject, 5)
            .await
            .unwrap();
    }
    drop(conn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again().await;

    count_becomes(
        h.pool(),
        "SELECT count(*) FROM dsr_requests WHERE status = 'completed' AND id > $1",
        0,
        2,
    )
    .await;
    count_becomes(
        h.pool(),
        "SELECT count(*) FROM exports WHERE subscriber_id = $1",
        exported_id,
        1,
    )
    .await;
    count_becomes(
        h.pool(),
        "SELECT count(*) + 0 * $1 FROM jobs WHERE kind IN ('dsr', 'export_link')",
        0,
        0,
    )
    .await;
    assert!(
        h.texts_to(&exported.psid)
            .iter()
            .any(|text| text.contains("/exports/")),
        "the export's link was sent"
    );
    // Every catalogued row keyed by the erased person's id that erasure deletes is gone.
    for c in catalog::COLUMNS {
        if let (Keyed::Subscriber { column }, Erasure::DeleteRow | Erasure::Cascade { .. }) =
            (c.keyed, c.erasure)
        {
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {} WHERE {column} = $1",
                c.table
            )))
            .bind(erased_id)
            .fetch_one(h.pool())
            .await
            .unwrap();
            assert_eq!(
                rows, 0,
                "{}.{} still holds the erased person",
                c.table, c.column
            );
        }
    }
}
