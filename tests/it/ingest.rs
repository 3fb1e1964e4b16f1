//! Webhook ingest when Facebook hangs up: deliveries aborted at random points under load are
//! stored whole or not at all, no connection is left inside a transaction, and the web process
//! carries on (a STOP sent right after is honoured).

use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{Harness, Process, free_port, random_psid};
use crate::webhook_client::{WEBHOOK, WebClient, count, signature, wait_count};

/// Deliveries aborted by the client, and complete ones sent alongside as load.
const ABORTED: usize = 500;
const COMPLETE: usize = 500;
/// Connections open at once.
const PARALLEL: usize = 64;

/// A signed delivery of two messages from one person, as Facebook batches them.
fn delivery(secret: &str, page: &str, mids: [&str; 2]) -> (Vec<u8>, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let psid = random_psid();
    let events: Vec<_> = mids
        .iter()
        .map(|mid| {
            serde_json::json!({
                "sender": {"id": psid}, "recipient": {"id": page}, "timestamp": now,
                "message": {"mid": mid, "text": "hello"}
            })
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "object": "page",
        "entry": [{"id": page, "time": now, "messaging": events}]
    }))
    .unwrap();
    let signature = signature(secret, &body);
    (body, signature)
}

/// Writes the request (all of it, or a random part of its body), then hangs up after a random
/// pause: before the handler starts, during its database work, or after it answered.
async fn post_and_abort(port: u16, body: Vec<u8>, signature: String) {
    let (cut, pause) = {
        let mut rng = rand::thread_rng();
        let cut = if rng.gen_bool(0.2) {
            rng.gen_range(0..body.len())
        } else {
            body.len()
        };
        (cut, Duration::from_micros(rng.gen_range(0..50_000)))
    };
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let head = format!(
        "POST {WEBHOOK} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         x-hub-signature-256: {signature}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body[..cut]).await;
    tokio::time::sleep(pause).await;
    // An abrupt hang-up (RST), as when a load balancer or Facebook's side gives up.
    let _ = stream.set_zero_linger();
    drop(stream);
}

fn mid_hash(mid: &str) -> Vec<u8> {
    Sha256::digest(mid.as_bytes()).to_vec()
}

/// How many of these events are stored.
async fn stored(h: &Harness, mids: &[String]) -> i64 {
    let hashes: Vec<Vec<u8>> = mids.iter().map(|mid| mid_hash(mid)).collect();
    sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE mid_hash = ANY($1)")
        .bind(&hashes)
        .fetch_one(h.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aborted_deliveries_are_stored_whole_or_not_at_all() {
    let mut h = Harness::new().await;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let port = free_port();
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut env = h.process_env();
    env.push(("MOONENGAGE__WEB__PORT".into(), port.to_string()));
    env.push(("MOONENGAGE__WEB__HOST".into(), "127.0.0.1".into()));
    // A connection for each request in flight: the hang-ups then land inside transactions
    // rather than in the wait for a connection.
    env.push((
        "MOONENGAGE__DATABASE__MAX_CONNECTIONS".into(),
        PARALLEL.to_string(),
    ));
    let _web = Process::start_logged("web", &env, &output);
    let web = WebClient {
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        secret: secrecy::ExposeSecret::expose_secret(&h.settings.messenger.app_secret).to_owned(),
    };
    let started = Instant::now();
    while web
        .http
        .get(format!("{}/healthz", web.url))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "web did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let aborted: Vec<[String; 2]> = (0..ABORTED)
        .map(|i| [format!("abort-{i}-a"), format!("abort-{i}-b")])
        .collect();
    let complete: Vec<[String; 2]> = (0..COMPLETE)
        .map(|i| [format!("whole-{i}-a"), format!("whole-{i}-b")])
        .collect();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mids) in aborted.iter().enumerate() {
        let (body, sig) = delivery(&web.secret, &page, [&mids[0], &mids[1]]);
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            post_and_abort(port, body, sig).await;
            drop(permit);
        });
        if let Some(mids) = complete.get(i) {
            let (body, sig) = delivery(&web.secret, &page, [&mids[0], &mids[1]]);
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            let client = web.clone();
            tasks.spawn(async move {
                let response = client.post_raw(body, Some(sig)).await;
                assert_eq!(response.status(), 200, "a complete delivery was refused");
                drop(permit);
            });
        }
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    // Handlers of hung-up requests finish on their own; give them the time a slow one takes.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for mids in &complete {
        assert_eq!(
            stored(&h, mids).await,
            2,
            "a complete delivery was not stored"
        );
    }
    let mut whole = 0;
    for mids in &aborted {
        match stored(&h, mids).await {
            0 => {}
            2 => whole += 1,
            n => panic!("an aborted delivery was stored in part ({n} of 2 events)"),
        }
    }
    let idle_in_transaction: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT application_name, query FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(
        idle_in_transaction.is_empty(),
        "connections were left inside a transaction: {idle_in_transaction:?}"
    );

    // The process still serves: a person opts in, then says STOP, and is unsubscribed. (The
    // worker starts only now, so every connection checked above was the web process's.)
    h.start_worker("ingest").await;
    let psid = random_psid();
    web.send_text(&page, &psid, "after-1", "hi").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers WHERE status = 'active'",
        i64::try_from(COMPLETE + whole).unwrap() + 1,
        Duration::from_secs(30),
    )
    .await;
    web.send_text(&page, &psid, "after-2", "STOP").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
        )
        .await,
        0
    );

    let output = output.lock().unwrap().join("\n");
    assert!(
        !output.contains("transaction in progress"),
        "the web process logged a connection reused inside a transaction:\n{output}"
    );
}

/// A delivery too large for one statement is stored in runs inside one transaction: every event
/// once, each queued, repeats inside the delivery counted as duplicates.
#[tokio::test]
async fn a_large_delivery_is_stored_whole() {
    let mut h = Harness::new().await;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let web = WebClient::start(&mut h).await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut events: Vec<_> = (0..400)
        .map(|i| {
            serde_json::json!({
                "sender": {"id": random_psid()}, "recipient": {"id": page}, "timestamp": now,
                "message": {"mid": format!("large-{i}"), "text": "hello"}
            })
        })
        .collect();
    events.push(events[0].clone());
    let payload = serde_json::json!({
        "object": "page",
        "entry": [{"id": page, "time": now, "messaging": events}]
    });
    let response = web.deliver(&payload).await;
    assert_eq!(response.status(), 200);
    let received: serde_json::Value = response.json().await.unwrap();
    assert_eq!(received["stored"], 400);
    assert_eq!(received["duplicates"], 1);
    assert_eq!(count(&h, "SELECT count(*) FROM webhook_events").await, 400);
    h.start_worker("large").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers",
        400,
        Duration::from_secs(60),
    )
    .await;
}

/// One person's events are acted on in the order they happened, however their jobs race: a
/// newcomer's "hi" and "STOP" in one delivery always end unsubscribed.
#[tokio::test]
async fn a_persons_events_are_acted_on_in_order() {
    const PEOPLE: usize = 60;
    let mut h = Harness::new().await;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let web = WebClient::start(&mut h).await;
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<_> = (0..PEOPLE)
        .flat_map(|i| {
            let (psid, page) = (random_psid(), page.clone());
            ["hi", "STOP"]
                .into_iter()
                .enumerate()
                .map(move |(n, text)| {
                    serde_json::json!({
                        "sender": {"id": psid}, "recipient": {"id": page}, "timestamp": now,
                        "message": {"mid": format!("order-{i}-{n}"), "text": text}
                    })
                })
        })
        .collect();
    let payload = serde_json::json!({
        "object": "page",
        "entry": [{"id": page, "time": now, "messaging": events}]
    });
    assert_eq!(web.deliver(&payload).await.status(), 200);
    h.start_worker("order-1").await;
    h.start_worker("order-2").await;
    wait_count(
        &h,
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL",
        i64::try_from(2 * PEOPLE).unwrap(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'"
        )
        .await,
        i64::try_from(PEOPLE).unwrap(),
        "every newcomer who said hi then STOP is unsubscribed"
    );
}
