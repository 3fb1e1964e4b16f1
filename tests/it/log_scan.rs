//! "Avoid logging user activities": web, a worker and the scheduler run as real processes at
//! `info` through a campaign, a STOP, an unsubscribe link, an export (downloaded) and an
//! erasure; everything they print is scanned for the people involved — their internal ids,
//! PSIDs and names. None may appear: per-person events are counted in metrics instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moonengage_privacy::unsubscribe::{UnsubscribeClaims, UnsubscribeSigner};
use nix::sys::signal::Signal;
use reqwest::StatusCode;

use crate::helpers::eventually;
use crate::helpers::{Harness, Person, Process, free_port};
use crate::notifications::secs;
use crate::webhook_client::{WebClient, wait_count};

/// Ids no counter, port or timestamp of a short test run would print by chance.
const FIRST_ID: i64 = 7_340_021;

/// The first message to `psid` that contains `needle`.
fn message_with(h: &Harness, psid: &str, needle: &str) -> Option<String> {
    h.texts_to(psid)
        .into_iter()
        .find(|text| text.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_of_every_process_name_nobody_through_a_campaign_stop_unsubscribe_export_and_erasure()
 {
    let h = Harness::new().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE subscribers ALTER COLUMN id RESTART WITH {FIRST_ID}"
    )))
    .execute(h.pool())
    .await
    .unwrap();
    let page = h.add_page("5101").await;
    let people: Vec<Person> = ["Zebulon", "Philippa", "Ottoline", "Barnaby", "Clementine"]
        .into_iter()
        .map(Person::in_window)
        .collect();
    h.seed(page, "5101", &people).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM subscribers ORDER BY id")
        .fetch_all(h.pool())
        .await
        .unwrap();
    assert_eq!(ids.first(), Some(&FIRST_ID));

    let output: Arc<Mutex<Vec<String>>> = Arc::default();
    let web_port = free_port();
    let mut env = h.process_env();
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), "info".into()));
    let mut processes: Vec<Process> = Vec::new();
    for (binary, port) in [
        ("web", web_port),
        ("worker", free_port()),
        ("scheduler", free_port()),
    ] {
        let mut env = env.clone();
        env.push(("PORT".into(), port.to_string()));
        processes.push(Process::start_logged(binary, &env, &output));
    }
    let web = WebClient {
        url: format!("http://127.0.0.1:{web_port}"),
        http: reqwest::Client::new(),
        secret: {
            use secrecy::ExposeSecret;
            h.settings.messenger.app_secret.expose_secret().to_owned()
        },
    };
    eventually("web answers", secs(30), || async {
        reqwest::get(format!("{}/healthz", web.url))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    // A campaign reaches everybody.
    let campaign = h
        .campaign(page, "Hi {{first_name default=\"there\"}}!")
        .await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!(done.sent, 5);

    // A STOP, an unsubscribe link, an export (downloaded) and an erasure.
    web.send_text("5101", &people[0].psid, "m_log_stop", "stop")
        .await;
    let signer = UnsubscribeSigner::new(&h.settings.unsubscribe).unwrap();
    let token = signer.sign(&UnsubscribeClaims {
        subscriber_id: ids[1],
        page_id: page,
        campaign_id: campaign,
    });
    let unsubscribed = web
        .http
        .post(format!("{}/u/{token}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unsubscribed.status(), StatusCode::OK);
    web.send_text("5101", &people[2].psid, "m_log_export", "export my data")
        .await;
    web.send_text("5101", &people[3].psid, "m_log_erase", "delete my data")
        .await;
    eventually("the export link is sent", secs(60), || async {
        message_with(&h, &people[2].psid, "/exports/").is_some()
    })
    .await;
    let link = message_with(&h, &people[2].psid, "/exports/").unwrap();
    let start = link.find("/exports/").unwrap();
    let path: String = link[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let downloaded = web
        .http
        .post(format!("{}{path}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK, "{path}");
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'",
        2,
        secs(30),
    )
    .await;
    wait_count(
        &h,
        "SELECT count(*) FROM dsr_requests WHERE status = 'completed'",
        2,
        secs(60),
    )
    .await;
    wait_count(&h, "SELECT count(*) FROM subscribers", 4, secs(30)).await;
    eventually("the STOP is confirmed", secs(30), || async {
        message_with(&h, &people[0].psid, "You are unsubscribed").is_some()
    })
    .await;

    // Stopping lets each process write its last lines.
    for process in &mut processes {
        process.signal(Signal::SIGTERM);
        process.wait(secs(60)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = output.lock().unwrap().join("\n");
    for line in ["web listening", "worker started", "scheduler started"] {
        assert!(logs.contains(line), "the capture holds `{line}`:\n{logs}");
    }
    let mut needles: Vec<String> = ids.iter().map(ToString::to_string).collect();
    for person in &people {
        needles.push(person.psid.clone());
        needles.push(person.first_name.clone());
    }
    needles.push("subscriber_id".into());
    for needle in &needles {
        let hits: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(needle.as_str()))
            .collect();
        assert!(
            hits.is_empty(),
            "`{needle}` is logged at info:\n{}",
            hits.join("\n")
        );
    }
}
