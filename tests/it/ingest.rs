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

/// Deliveries arriving together are stored together (group commit), yet each is answered for
/// itself: 300 concurrent deliveries, each sharing one message id with the next (as Facebook's
/// resends do), all get 200 and between them store every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_are_stored_together_and_answered_each() {
    const DELIVERIES: usize = 300;
    let mut h = Harness::new().await;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let web = std::sync::Arc::new(WebClient::start(&mut h).await);
    let mids: Vec<String> = (0..=DELIVERIES).map(|i| format!("group-{i}")).collect();
    let answers = futures::future::join_all((0..DELIVERIES).map(|i| {
        let web = web.clone();
        let (body, signature) = delivery(&web.secret, &page, [&mids[i], &mids[i + 1]]);
        async move {
            let response = web.post_raw(body, Some(signature)).await;
            assert_eq!(response.status(), 200);
            let answer: serde_json::Value = response.json().await.unwrap();
            (
                answer["stored"].as_u64().unwrap(),
                answer["duplicates"].as_u64().unwrap(),
            )
        }
    }))
    .await;
    let stored: u64 = answers.iter().map(|(s, _)| s).sum();
    let duplicates: u64 = answers.iter().map(|(_, d)| d).sum();
    assert_eq!(
        stored,
        mids.len() as u64,
        "each event stored by one delivery"
    );
    assert_eq!(stored + duplicates, 2 * DELIVERIES as u64);
    assert_eq!(self::stored(&h, &mids).await, mids.len() as i64);
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
    wait_processed(&h, 2 * PEOPLE).await;
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

/// Waits until `n` webhook events are processed.
async fn wait_processed(h: &Harness, n: usize) {
    wait_count(
        h,
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL",
        i64::try_from(n).unwrap(),
        Duration::from_secs(60),
    )
    .await;
}

/// Messages from `people`, one each, at `at` (milliseconds), in one delivery.
fn messages(page: &str, people: &[(String, String)], text: &str, at: i64) -> serde_json::Value {
    let events: Vec<_> = people
        .iter()
        .map(|(psid, mid)| {
            serde_json::json!({
                "sender": {"id": psid}, "recipient": {"id": page}, "timestamp": at,
                "message": {"mid": mid, "text": text}
            })
        })
        .collect();
    serde_json::json!({"object": "page", "entry": [{"id": page, "time": at, "messaging": events}]})
}

/// Batches of 7 over two workers, and each person's STOP received (so claimed) before their
/// earlier "hi": a batch acts on a sender's earlier events first, wherever they are queued, so
/// everyone ends unsubscribed, each effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_persons_events_are_acted_on_in_order_across_batches() {
    const PEOPLE: usize = 50;
    let mut h = Harness::new().await;
    h.settings.queue.batch_size = 7;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let web = WebClient::start(&mut h).await;
    let people: Vec<String> = (0..PEOPLE).map(|_| random_psid()).collect();
    let now = chrono::Utc::now().timestamp_millis();
    let stops: Vec<(String, String)> = people
        .iter()
        .enumerate()
        .map(|(i, psid)| (psid.clone(), format!("across-{i}-stop")))
        .collect();
    let his: Vec<(String, String)> = people
        .iter()
        .enumerate()
        .map(|(i, psid)| (psid.clone(), format!("across-{i}-hi")))
        .collect();
    let stop = messages(&page, &stops, "STOP", now);
    assert_eq!(web.deliver(&stop).await.status(), 200);
    let hi = messages(&page, &his, "hi", now - 1_000);
    assert_eq!(web.deliver(&hi).await.status(), 200);
    h.start_worker("across-1").await;
    h.start_worker("across-2").await;
    wait_processed(&h, 2 * PEOPLE).await;
    let people = i64::try_from(PEOPLE).unwrap();
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'"
        )
        .await,
        people,
        "everyone who said hi then STOP is unsubscribed"
    );
    h.wait_received(u64::try_from(PEOPLE).unwrap()).await;
    for psid in &stops {
        assert_eq!(h.texts_to(&psid.0).len(), 1, "each STOP is confirmed once");
    }
}

/// An event that cannot be processed (its sealed sender is corrupt) is retried with a backoff
/// and parked as failed after its last attempt, alone: everyone else in its batch is processed
/// at once, and its sender's later message waits for it, then is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_event_is_retried_then_parked_without_holding_back_others() {
    const OTHERS: usize = 20;
    let mut h = Harness::new().await;
    h.settings.queue.max_attempts = 3;
    h.settings.queue.retry_base_ms = 200;
    h.settings.queue.retry_max_ms = 400;
    let page = format!("page-{}", random_psid());
    h.add_page(&page).await;
    let web = WebClient::start(&mut h).await;
    let unlucky = random_psid();
    let bad: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_events
           (mid_hash, page_fb_id, psid, kind, intent, event_at, sender_index)
         VALUES ($1, $2, $3, 'message', 'none', now() - interval '1 minute', $4)
         RETURNING id",
    )
    .bind(mid_hash("failing-corrupt"))
    .bind(&page)
    .bind(vec![7u8; 64])
    .bind(h.keyring.blind_index(&page, &unlucky))
    .fetch_one(h.pool())
    .await
    .unwrap();
    web.send_text(&page, &unlucky, "failing-later", "hi").await;
    let others: Vec<(String, String)> = (0..OTHERS)
        .map(|i| (random_psid(), format!("failing-other-{i}")))
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        web.deliver(&messages(&page, &others, "hi", now))
            .await
            .status(),
        200
    );
    let started = Instant::now();
    h.start_worker("failing").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers",
        i64::try_from(OTHERS).unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let others_done = started.elapsed();
    wait_count(
        &h,
        "SELECT count(*) FROM webhook_events WHERE failed_at IS NOT NULL",
        1,
        Duration::from_secs(30),
    )
    .await;
    let (attempts, error, sealed, failed_at): (
        i32,
        Option<String>,
        bool,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT attempts, last_error, psid IS NOT NULL, failed_at FROM webhook_events
             WHERE id = $1",
    )
    .bind(bad)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 3, "tried max_attempts times");
    assert!(error.is_some_and(|e| !e.is_empty()), "its error is kept");
    assert!(sealed, "a failed event keeps its sender until retention");
    assert!(
        others_done < Duration::from_secs(5),
        "the others waited for the retries: {others_done:?}"
    );
    // The sender's later message is processed once the failed one is parked, not before.
    wait_processed(&h, OTHERS + 1).await;
    let later_processed: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT processed_at FROM webhook_events WHERE mid_hash = $1")
            .bind(mid_hash("failing-later"))
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(
        later_processed >= failed_at,
        "processed before the earlier event was parked"
    );
    assert_eq!(
        count(&h, "SELECT count(*) FROM subscribers").await,
        i64::try_from(OTHERS).unwrap() + 1
    );
}

/// Erasing someone whose events are still queued deletes those events (they are the queue):
/// nothing of theirs is processed afterwards, and other people's events are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_a_persons_unprocessed_events() {
    let mut h = Harness::new().await;
    let page = format!("page-{}", random_psid());
    let page_id = h.add_page(&page).await;
    let web = WebClient::start(&mut h).await;
    let (erased, kept) = (random_psid(), random_psid());
    for n in 0..3 {
        web.send_text(&page, &erased, &format!("erase-me-{n}"), "hi")
            .await;
    }
    web.send_text(&page, &kept, "keep-me", "hi").await;
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
        )
        .await,
        4
    );

    let subject = moonengage_privacy::dsr::Subject {
        page_id,
        subscriber_id: None,
        psid: Some(erased.clone()),
    };
    let mut tx = h.pool().begin().await.unwrap();
    let filed = moonengage_privacy::dsr::file(
        &mut tx,
        &h.keyring,
        moonengage_privacy::dsr::DsrType::Erasure,
        moonengage_privacy::dsr::Channel::Admin,
        &subject,
        3,
    )
    .await
    .unwrap();
    let outcome = moonengage_privacy::erasure::erase(&mut tx, &h.keyring, filed.id, &subject, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(outcome.webhook_events, 3);
    let theirs: Vec<String> = (0..3).map(|n| format!("erase-me-{n}")).collect();
    assert_eq!(stored(&h, &theirs).await, 0);

    h.start_worker("erasure").await;
    wait_processed(&h, 1).await;
    assert_eq!(count(&h, "SELECT count(*) FROM subscribers").await, 1);
    assert_eq!(
        count(&h, "SELECT count(*) FROM webhook_events").await,
        1,
        "only the other person's event is left"
    );
}
