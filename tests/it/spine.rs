//! The spine: campaign → per-recipient jobs → workers → Graph API sandbox.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use moonengage_privacy::unsubscribe::{self, UnsubscribeSigner};
use moonengage_sandbox::MessageFilter;
use nix::sys::signal::Signal;

use crate::helpers::{Harness, Person, Process, repo_root, wait_completed};

const TEMPLATE: &str = "Hi {{first_name default=\"there\"}}, {{page_name}} has news!";

/// Every message the sandbox got, by PSID.
fn received_by_psid(h: &Harness) -> HashMap<String, Vec<moonengage_sandbox::ReceivedMessage>> {
    let mut by_psid: HashMap<String, Vec<_>> = HashMap::new();
    for message in h.sandbox.messages(&MessageFilter::default()) {
        by_psid
            .entry(message.psid.clone())
            .or_default()
            .push(message);
    }
    by_psid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_reaches_every_subscriber_exactly_once_with_an_unsubscribe_option() {
    let mut h = Harness::new().await;
    let mut people = HashMap::new();
    let mut campaigns = Vec::new();
    for fb in ["501", "502"] {
        let page = h.add_page(fb).await;
        let batch: Vec<Person> = (0..2_500)
            .map(|i| Person::in_window(&format!("Name{i}")))
            .collect();
        h.seed(page, fb, &batch).await;
        people.insert(fb, batch);
        campaigns.push((fb, page, h.campaign(page, TEMPLATE).await));
    }
    h.start_scheduler().await;
    h.start_worker("it-worker-1").await;

    for (_, _, id) in &campaigns {
        let done = h.wait_completed(*id, Duration::from_secs(120)).await;
        assert_eq!(
            (
                done.recipients,
                done.sent,
                done.skipped,
                done.failed,
                done.unknown
            ),
            (2_500, 2_500, 0, 0, 0)
        );
    }
    let stats = h.sandbox.stats();
    assert_eq!(stats.received_total, 5_000);
    assert_eq!(stats.duplicates, 0);

    let signer = UnsubscribeSigner::new(&h.settings.unsubscribe).unwrap();
    let received = received_by_psid(&h);
    for (fb, page, campaign) in &campaigns {
        for person in &people[fb] {
            let messages = &received[&person.psid];
            assert_eq!(messages.len(), 1, "one message per person");
            let message = &messages[0];
            assert_eq!(message.page_id, *fb);
            assert_eq!(
                message.text,
                format!("Hi {}, Page {fb} has news!", person.first_name)
            );
            let quick = &message.quick_replies;
            assert_eq!(quick.len(), 1);
            assert_eq!(quick[0].title, "Unsubscribe");
            let token =
                unsubscribe::token_from_payload(&quick[0].payload).expect("unsubscribe payload");
            let claims = signer.verify(token).expect("a valid token");
            assert_eq!((claims.page_id, claims.campaign_id), (*page, *campaign));
            let subscriber: i64 = sqlx::query_scalar(
                "SELECT id FROM subscribers WHERE page_id = $1 AND psid_index = $2",
            )
            .bind(page)
            .bind(h.keyring.blind_index(fb, &person.psid))
            .fetch_one(h.pool())
            .await
            .unwrap();
            assert_eq!(
                claims.subscriber_id, subscriber,
                "the token names this person"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_outside_their_window_or_unsubscribed_receive_nothing_and_the_record_says_why() {
    let mut h = Harness::new().await;
    let page = h.add_page("601").await;
    let eligible: Vec<Person> = (0..20)
        .map(|i| Person::in_window(&format!("In{i}")))
        .collect();
    let closed: Vec<Person> = (0..7)
        .map(|i| Person::outside_window(&format!("Out{i}")))
        .collect();
    let gone: Vec<Person> = (0..5)
        .map(|i| Person::in_window(&format!("Gone{i}")))
        .collect();
    let unreachable: Vec<Person> = (0..3)
        .map(|i| Person::in_window(&format!("Lost{i}")))
        .collect();
    for group in [&eligible, &closed, &gone, &unreachable] {
        h.seed(page, "601", group).await;
    }
    for (group, status) in [(&gone, "unsubscribed"), (&unreachable, "unreachable")] {
        let indexes: Vec<Vec<u8>> = group
            .iter()
            .map(|p| h.keyring.blind_index("601", &p.psid))
            .collect();
        sqlx::query("UPDATE subscribers SET status = $1 WHERE psid_index = ANY($2)")
            .bind(status)
            .bind(indexes)
            .execute(h.pool())
            .await
            .unwrap();
    }
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker-1").await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.recipients, done.sent, done.skipped), (35, 20, 15));

    let received: HashSet<String> = received_by_psid(&h).into_keys().collect();
    let expected: HashSet<String> = eligible.iter().map(|p| p.psid.clone()).collect();
    assert_eq!(received, expected);

    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(*) FROM deliveries WHERE campaign_id = $1 AND status = 'skipped'
         GROUP BY reason ORDER BY reason",
    )
    .bind(campaign)
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![
            ("outside_window".to_owned(), 7),
            ("unreachable".to_owned(), 3),
            ("unsubscribed".to_owned(), 5)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dump_after_a_run_holds_no_psid_or_first_name_in_clear() {
    let mut h = Harness::new().await;
    let page = h.add_page("701").await;
    let people: Vec<Person> = (0..200)
        .map(|i| Person::in_window(&format!("Zephyrine{i:03}")))
        .collect();
    h.seed(page, "701", &people).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    h.start_scheduler().await;
    h.start_worker("it-worker-1").await;
    h.wait_completed(campaign, Duration::from_secs(60)).await;

    let dump = tokio::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&h.db.url)
        .output()
        .await
        .expect("pg_dump is installed");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("Page 701"),
        "the dump holds the data (sanity check)"
    );
    assert!(
        dump.contains("COPY public.deliveries") && dump.contains("COPY public.jobs"),
        "the dump includes the queue's rows"
    );
    // The scan covers every table the catalog says holds personal data.
    for c in moonengage_privacy::catalog::COLUMNS {
        assert!(
            dump.contains(&format!("COPY public.{} ", c.table)),
            "{} is not in the dump",
            c.table
        );
    }
    for person in &people {
        assert!(
            !dump.contains(&person.psid),
            "a PSID is in the dump in clear"
        );
        assert!(
            !dump.contains(&person.first_name),
            "a first name is in the dump in clear"
        );
    }
    assert!(
        !dump.contains("Zephyrine"),
        "no rendered message text is stored"
    );
    assert!(
        !dump.contains("sandbox-token-701"),
        "the Page token is not in clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanning_out_again_after_a_crash_queues_no_one_twice() {
    let h = Harness::new().await;
    let page = h.add_page("801").await;
    let people: Vec<Person> = (0..250)
        .map(|i| Person::in_window(&format!("P{i}")))
        .collect();
    h.seed(page, "801", &people).await;
    let campaign = h.campaign(page, TEMPLATE).await;
    use moonengage_queue::sends;
    use moonengage_scheduler::services::fanout;
    assert_eq!(fanout::start_due(h.pool()).await.unwrap(), 1);
    assert!(
        !sends::fan_out(h.pool(), campaign, 0, 100, true)
            .await
            .unwrap()
    );
    // A leader that died after its batch committed but before it knew: the same batch again
    // counts nothing.
    sends::fan_out(h.pool(), campaign, 0, 100, true)
        .await
        .unwrap();
    // Finish it, then rewind the cursor by hand: the batch fails whole and adds no one twice.
    crate::helpers::fan_out_all(h.pool(), campaign, 100, true).await;
    sqlx::query(
        "UPDATE campaigns SET fanout_cursor = 0, fanout_done = false, recipients = 0, queued = 0
         WHERE id = $1",
    )
    .bind(campaign)
    .execute(h.pool())
    .await
    .unwrap();
    assert!(
        sends::fan_out(h.pool(), campaign, 0, 100, true)
            .await
            .is_err(),
        "a batch that would queue someone twice fails"
    );
    let (jobs, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT subscriber_id) FROM deliveries WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!((jobs, distinct), (250, 250));
    let cursor: i64 = sqlx::query_scalar("SELECT fanout_cursor FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(cursor, 0, "the failed batch moved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_worker_mid_campaign_loses_nothing() {
    let h = Harness::new().await;
    h.sandbox.set_latency(Duration::from_millis(30));
    let page = h.add_page("901").await;
    let people: Vec<Person> = (0..1_500)
        .map(|i| Person::in_window(&format!("S{i}")))
        .collect();
    h.seed(page, "901", &people).await;
    let env = h.process_env();
    let mut worker_a = Process::start("worker", &env);
    let mut worker_b = Process::start("worker", &env);
    let mut scheduler = Process::start("scheduler", &env);
    let campaign = h.campaign(page, TEMPLATE).await;

    h.wait_received(300).await;
    worker_a.signal(Signal::SIGTERM);
    let status = worker_a.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "the worker drains and exits 0: {status}");
    let at_exit = h.sandbox.stats().received_total;
    assert!(at_exit < 1_500, "the worker was stopped mid-campaign");

    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (1_500, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (1_500, 0));
    let received: HashSet<String> = received_by_psid(&h).into_keys().collect();
    assert_eq!(received.len(), 1_500);
    worker_b.signal(Signal::SIGTERM);
    scheduler.signal(Signal::SIGTERM);
    assert!(worker_b.wait(Duration::from_secs(30)).await.success());
    assert!(scheduler.wait(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_scheduler_takes_over_when_the_leader_is_killed() {
    let h = Harness::new().await;
    let page = h.add_page("911").await;
    h.seed(
        page,
        "911",
        &[Person::in_window("Ann"), Person::in_window("Bo")],
    )
    .await;
    let env = h.process_env();
    let mut leader = Process::start("scheduler", &env);
    // The first scheduler leads once it holds the advisory lock.
    let mut held = false;
    for _ in 0..100 {
        held = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                             AND pid <> pg_backend_pid())",
        )
        .fetch_one(h.pool())
        .await
        .unwrap();
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "the first scheduler took the leader lock");
    let mut standby = Process::start("scheduler", &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    leader.signal(Signal::SIGKILL);
    leader.wait(Duration::from_secs(10)).await;

    let _worker = Process::start("worker", &env);
    let campaign = h.campaign(page, TEMPLATE).await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(60)).await;
    assert_eq!(done.sent, 2);
    standby.signal(Signal::SIGTERM);
    assert!(standby.wait(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_procfile_under_honcho_with_three_workers_and_two_schedulers_sends_once_each() {
    let h = Harness::new().await;
    h.sandbox.set_latency(Duration::from_millis(10));
    let page = h.add_page("921").await;
    let people: Vec<Person> = (0..3_000)
        .map(|i| Person::in_window(&format!("H{i}")))
        .collect();
    h.seed(page, "921", &people).await;

    let mut env = h.process_env();
    env.push((
        "MOONENGAGE_BIN".into(),
        crate::helpers::bin_dir().display().to_string(),
    ));
    env.push(("MOONENGAGE__WORKER__CONCURRENCY".into(), "8".into()));
    env.push(("MOONENGAGE__QUEUE__BATCH_SIZE".into(), "20".into()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut honcho = tokio::process::Command::new("honcho")
        .current_dir(repo_root())
        .args([
            "start",
            "--port",
            &port.to_string(),
            "--concurrency",
            "worker=3,scheduler=2",
        ])
        .args(["web", "worker", "scheduler"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("honcho is installed (pip install honcho)");

    // All three workers registered before the campaign starts, so each can take a share.
    for _ in 0..200 {
        let workers: i64 =
            sqlx::query_scalar("SELECT count(*) FROM queue_workers WHERE 'send' = ANY(kinds)")
                .fetch_one(h.pool())
                .await
                .unwrap();
        if workers == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let campaign = h.campaign(page, TEMPLATE).await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.unknown), (3_000, 0, 0));
    let stats = h.sandbox.stats();
    assert_eq!((stats.received_total, stats.duplicates), (3_000, 0));

    let shares: Vec<(String, i64)> = sqlx::query_as(
        "SELECT locked_by, count(*) FROM deliveries WHERE status = 'sent' GROUP BY locked_by",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(
        shares.len(),
        3,
        "each of the 3 workers did part of the work: {shares:?}"
    );
    assert!(shares.iter().all(|(_, n)| *n > 0));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(honcho.id().unwrap() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(40), honcho.wait())
        .await
        .expect("honcho stops its processes on SIGTERM")
        .unwrap();
}
