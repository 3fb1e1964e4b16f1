//! Data-subject rights end to end, against real Postgres and the sandbox: erasure leaves no
//! trace of the person in any column of any table (found from pg_catalog), an export holds
//! every category and its link works once, Facebook's signed data-deletion callback files a
//! request or is refused with nothing stored, and an objection unsubscribes.

use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use moonengage_core::jobs::{Cause, NotifyJob, NotifyKind};
use moonengage_privacy::catalog::{self, Erasure, Export, Keyed};
use moonengage_privacy::dsr::DsrJob;
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_privacy::exports;
use moonengage_privacy::unsubscribe::{UnsubscribeClaims, UnsubscribeSigner};
use moonengage_queue::jobs;
use moonengage_sandbox::MessageFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Harness, Person, random_psid};
use crate::webhook_client::{WebClient as Web, count, wait_count};

const FB_PAGE: &str = "3001";
const WAIT: Duration = Duration::from_secs(30);

/// A harness whose processes each keep a small pool: the whole suite shares one Postgres.
async fn harness() -> Harness {
    let mut h = Harness::new().await;
    h.settings.database.max_connections = 8;
    h
}

/// Waits for the sandbox to have received a message to `psid` containing `needle`.
pub(crate) async fn wait_message(h: &Harness, psid: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let found = h
            .sandbox
            .messages(&MessageFilter {
                psid: Some(psid.to_owned()),
                ..MessageFilter::default()
            })
            .into_iter()
            .find(|m| m.text.contains(needle));
        if let Some(message) = found {
            return message.text;
        }
        assert!(started.elapsed() < WAIT, "no message with `{needle}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The export token in a link message.
pub(crate) fn token_in(text: &str) -> String {
    let start = text.find("/exports/").expect("a link") + "/exports/".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

pub(crate) async fn subscriber(h: &Harness, page: i64, psid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM subscribers WHERE page_id = $1 AND psid_index = $2")
        .bind(page)
        .bind(h.keyring.blind_index(FB_PAGE, psid))
        .fetch_optional(h.pool())
        .await
        .unwrap()
}

/// Waits until `nth` requests of `kind` are completed; returns the latest one's id and outcome.
/// On time-out, the request jobs' states and last results say why.
pub(crate) async fn completed(h: &Harness, kind: &str, nth: i64) -> (i64, String) {
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dsr_requests WHERE type = $1 AND status = 'completed'",
        )
        .bind(kind)
        .fetch_one(h.pool())
        .await
        .unwrap();
        if done == nth {
            break;
        }
        if started.elapsed() > WAIT {
            let jobs: Vec<(String, i32, Option<String>)> =
                sqlx::query_as("SELECT status, attempts, last_error FROM jobs WHERE kind = 'dsr'")
                    .fetch_all(h.pool())
                    .await
                    .unwrap();
            panic!("{done} {kind} requests completed, expected {nth}; jobs: {jobs:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query_as(
        "SELECT id, outcome FROM dsr_requests WHERE type = $1 AND status = 'completed'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(kind)
    .fetch_one(h.pool())
    .await
    .unwrap()
}

/// What identifies the person in the database.
struct Needles {
    subscriber_id: i64,
    psid: String,
    blind_index: Vec<u8>,
    /// Their PSID as sealed in the columns that hold it (subscriber, pending webhook event),
    /// and the hash of the message id that opted them in (their consent evidence).
    sealed: Vec<Vec<u8>>,
}

/// Every column of every table (from pg_catalog) holding the person: the
/// id as a whole word, or the PSID, blind index or a sealed PSID (hex) in anything's text form;
/// and in bytea, the exact bytes of the PSID, blind index, a sealed PSID or the id's digits
/// (job payloads are JSON in bytea).
async fn traces(h: &Harness, n: &Needles) -> Vec<String> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid
         WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert!(columns.len() > 50, "the catalog lists too few columns");
    let id = n.subscriber_id.to_string();
    let mut bytes = vec![
        n.psid.as_bytes().to_vec(),
        n.blind_index.clone(),
        id.as_bytes().to_vec(),
    ];
    bytes.extend(n.sealed.iter().cloned());
    let mut texts = vec![n.psid.clone(), hex::encode(&n.blind_index)];
    texts.extend(n.sealed.iter().map(hex::encode));
    let mut found = Vec::new();
    for (schema, table, column, kind) in columns {
        let hits: i64 = if kind == "bytea" {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema:?}.{table:?}
                 WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[]) AS n(needle)
                               WHERE position(needle in {column:?}) > 0)"
            )))
            .bind(&bytes)
            .fetch_one(h.pool())
            .await
            .unwrap()
        } else {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema:?}.{table:?}
                 WHERE {column:?}::text ~ ('\\m' || $1 || '\\M')
                    OR EXISTS (SELECT 1 FROM unnest($2::text[]) AS n(needle)
                               WHERE strpos({column:?}::text, needle) > 0)"
            )))
            .bind(&id)
            .bind(&texts)
            .fetch_one(h.pool())
            .await
            .unwrap()
        };
        if hits > 0 {
            found.push(format!("{schema}.{table}.{column}"));
        }
    }
    found
}

/// Rows of `table` whose `column` is the subscriber `id`.
async fn count_about(h: &Harness, table: &str, column: &str, id: i64) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE {column} = $1"
    )))
    .bind(id)
    .fetch_one(h.pool())
    .await
    .unwrap()
}

/// Everything about the other subscribers, as text, to compare before and after.
async fn others(h: &Harness, target: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT s::text FROM subscribers s WHERE id <> $1
         UNION ALL SELECT d::text FROM deliveries d WHERE subscriber_id <> $1
         UNION ALL SELECT j::text FROM jobs j WHERE subscriber_id <> $1
         ORDER BY 1",
    )
    .bind(target)
    .fetch_all(h.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_leaves_no_trace_of_the_person_in_any_column_and_spares_everyone_else() {
    let mut h = harness().await;
    let page = h.add_page(FB_PAGE).await;
    let before: Vec<Person> = (0..3).map(|_| Person::in_window("Other")).collect();
    h.seed(page, FB_PAGE, &before).await;
    // A distinctive id, so a whole-word search for it cannot hit anything else by chance.
    sqlx::query("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), 987654320)")
        .execute(h.pool())
        .await
        .unwrap();
    let web = Web::start(&mut h).await;
    h.start_worker("it-privacy-erase").await;
    h.start_scheduler().await;

    // Opt-in through a webhook, then someone else after them.
    let psid = random_psid();
    web.send_text(FB_PAGE, &psid, "m_erase_hello", "hello")
        .await;
    wait_count(&h, "SELECT count(*) FROM subscribers", 4, WAIT).await;
    let target = subscriber(&h, page, &psid).await.expect("opted in");
    assert_eq!(target, 987_654_321);
    h.seed(page, FB_PAGE, &[Person::in_window("After")]).await;

    // A campaign reaches everyone.
    let campaign = h.campaign(page, "Hello {{page_name}}").await;
    let progress = h.wait_completed(campaign, WAIT).await;
    assert_eq!(progress.sent, 5, "{progress:?}");
    // A job about them still waiting (due in an hour, so it is there for the scan).
    jobs::enqueue_after(
        h.pool(),
        &NotifyJob {
            subscriber_id: target,
            kind: NotifyKind::Unsubscribed,
            cause: Cause::Request(777),
        },
        Duration::from_secs(3600),
        3,
    )
    .await
    .unwrap();

    // An export they have not downloaded yet.
    web.send_text(FB_PAGE, &psid, "m_erase_export", "export my data")
        .await;
    completed(&h, "export", 1).await;
    let link = wait_message(&h, &psid, "/exports/").await;
    let export_token = token_in(&link);
    assert_eq!(count(&h, "SELECT count(*) FROM exports").await, 1);

    // An event of theirs not processed yet (waiting for a retry an hour away, so the running
    // worker leaves it queued).
    let sealed_event = h.keyring.seal_str(
        moonengage_privacy::crypto::SealedField::WebhookEventPsid,
        &psid,
    );
    sqlx::query(
        "INSERT INTO webhook_events (mid_hash, page_fb_id, psid, kind, intent, event_at, run_at)
         VALUES ($1, $2, $3, 'message', 'none', now(), now() + interval '1 hour')",
    )
    .bind(Sha256::digest(b"m_erase_pending").to_vec())
    .bind(FB_PAGE)
    .bind(&sealed_event)
    .execute(h.pool())
    .await
    .unwrap();

    let sealed_psid: Vec<u8> = sqlx::query_scalar("SELECT psid FROM subscribers WHERE id = $1")
        .bind(target)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let needles = Needles {
        subscriber_id: target,
        psid: psid.clone(),
        blind_index: h.keyring.blind_index(FB_PAGE, &psid),
        sealed: vec![
            sealed_psid,
            sealed_event,
            Sha256::digest(b"m_erase_hello").to_vec(),
        ],
    };
    // The scan is meaningful: before erasure it finds the person in each place they are held.
    let held = traces(&h, &needles).await;
    for place in [
        "public.subscribers.id",
        "public.subscribers.psid",
        "public.subscribers.psid_index",
        "public.deliveries.subscriber_id",
        "public.exports.subscriber_id",
        "public.webhook_events.psid",
        "public.webhook_events.mid_hash",
        "public.jobs.payload",
        "public.jobs.subscriber_id",
    ] {
        assert!(
            held.contains(&place.to_owned()),
            "{place} not found in {held:?}"
        );
    }
    // Every place the scan finds them is catalogued (a column holding the person but missing
    // from the catalog fails here).
    let catalogued: Vec<String> = catalog::COLUMNS
        .iter()
        .map(|c| format!("public.{}.{}", c.table, c.column))
        .collect();
    let uncatalogued: Vec<&String> = held.iter().filter(|p| !catalogued.contains(p)).collect();
    assert!(
        uncatalogued.is_empty(),
        "not in privacy::catalog: {uncatalogued:?}"
    );
    let others_before = others(&h, target).await;
    assert!(!others_before.is_empty());

    web.send_text(FB_PAGE, &psid, "m_erase_delete", "delete my data")
        .await;
    let (request_id, outcome) = completed(&h, "erasure", 1).await;
    assert!(outcome.starts_with("erased: 1 subscriber"), "{outcome}");
    assert!(outcome.contains("confirmation sent"), "{outcome}");
    let confirmation = wait_message(&h, &psid, "We are erasing all data").await;
    let code: String =
        sqlx::query_scalar("SELECT confirmation_code FROM dsr_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(confirmation.contains(&code));

    let left = traces(&h, &needles).await;
    assert!(left.is_empty(), "the person is still in {left:?}");
    // Every catalogued row keyed by their subscriber id that erasure deletes is gone.
    for c in catalog::COLUMNS {
        if let (Keyed::Subscriber { column }, Erasure::DeleteRow | Erasure::Cascade { .. }) =
            (c.keyed, c.erasure)
        {
            let rows = count_about(&h, c.table, column, target).await;
            assert_eq!(rows, 0, "{}.{} still holds the person", c.table, c.column);
        }
    }
    assert_eq!(others(&h, target).await, others_before, "others changed");
    let (sent,): (i32,) = sqlx::query_as("SELECT sent FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(sent, 5, "campaign totals are counts and stay");
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM dsr_requests WHERE subject_ref IS NOT NULL"
        )
        .await,
        0
    );

    // Their tokens are dead: the unsubscribe link and the export link.
    let signer = UnsubscribeSigner::new(&h.settings.unsubscribe).unwrap();
    let token = signer.sign(&UnsubscribeClaims {
        subscriber_id: target,
        page_id: page,
        campaign_id: campaign,
    });
    let page_text = web
        .http
        .get(format!("{}/u/{token}", web.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page_text.contains("Nothing left to unsubscribe"),
        "{page_text}"
    );
    let export = web
        .http
        .post(format!("{}/exports/{export_token}", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::NOT_FOUND);

    // Twice is harmless: the same job again does nothing; a new request holds nothing.
    assert!(
        jobs::enqueue(h.pool(), &DsrJob { request_id }, 3)
            .await
            .unwrap(),
        "the finished job left its key free"
    );
    let mut conn = h.pool().acquire().await.unwrap();
    dsr::file(
        &mut conn,
        &h.keyring,
        DsrType::Erasure,
        Channel::Admin,
        &Subject {
            page_id: page,
            subscriber_id: Some(target),
            psid: Some(psid.clone()),
        },
        3,
    )
    .await
    .unwrap();
    let (_, again) = completed(&h, "erasure", 2).await;
    assert_eq!(again, "nothing held");
    wait_count(&h, "SELECT count(*) FROM jobs WHERE kind = 'dsr'", 0, WAIT).await;
    let (first_outcome,): (String,) =
        sqlx::query_as("SELECT outcome FROM dsr_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(first_outcome, outcome);
    assert!(traces(&h, &needles).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_holds_every_category_is_sealed_and_its_link_works_once() {
    let mut h = harness().await;
    let page = h.add_page(FB_PAGE).await;
    let web = Web::start(&mut h).await;
    h.start_worker("it-privacy-export").await;
    h.start_scheduler().await;

    let psid = random_psid();
    web.send_text(FB_PAGE, &psid, "m_export_hello", "hello")
        .await;
    wait_count(&h, "SELECT count(*) FROM subscribers", 1, WAIT).await;
    let target = subscriber(&h, page, &psid).await.unwrap();
    let campaign = h.campaign(page, "Spring news from {{page_name}}").await;
    h.wait_completed(campaign, WAIT).await;
    web.send_text(FB_PAGE, &psid, "m_export_stop", "STOP").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'",
        1,
        WAIT,
    )
    .await;
    web.send_text(FB_PAGE, &psid, "m_export_ask", "export my data")
        .await;
    let (request_id, outcome) = completed(&h, "export", 1).await;
    assert!(outcome.contains("link sent in Messenger"), "{outcome}");
    let link = wait_message(&h, &psid, "/exports/").await;
    let token = token_in(&link);
    assert!(token.len() >= 22, "at least 128 bits");
    let code: String =
        sqlx::query_scalar("SELECT confirmation_code FROM dsr_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(link.contains(&code));

    // Stored sealed, the link only as a hash.
    let (payload, hash): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT payload, token_hash FROM exports")
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(!payload.windows(psid.len()).any(|w| w == psid.as_bytes()));
    assert_eq!(hash, Sha256::digest(token.as_bytes()).to_vec());

    // Looking at the link (as a link preview does) does not use it up.
    let url = format!("{}/exports/{token}", web.url);
    for _ in 0..2 {
        let shown = web.http.get(&url).send().await.unwrap();
        assert_eq!(shown.status(), StatusCode::OK);
        assert!(shown.headers().get("set-cookie").is_none());
        assert!(shown.text().await.unwrap().contains("Download"));
    }
    let download = web.http.post(&url).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/json");
    assert!(download.headers().get("set-cookie").is_none());
    let export: Value = serde_json::from_slice(&download.bytes().await.unwrap()).expect("JSON");

    assert_eq!(export["profile"]["page_scoped_id"], psid.as_str());
    assert_eq!(export["controller"]["facebook_page_id"], FB_PAGE);
    assert_eq!(export["consent"]["source"], "messenger");
    assert_eq!(
        export["consent"]["first_message_id_sha256"],
        hex::encode(Sha256::digest(b"m_export_hello"))
    );
    assert!(export["consent"]["opted_in_at"].is_string());
    assert_eq!(export["subscription"]["status"], "unsubscribed");
    assert!(export["subscription"]["unsubscribed_at"].is_string());
    let deliveries = export["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{export:#}");
    assert_eq!(deliveries[0]["campaign"], "test campaign");
    assert_eq!(deliveries[0]["status"], "sent");
    assert!(deliveries[0]["last_update_at"].is_string());
    let open = export["open_requests"].as_array().unwrap();
    assert!(
        open.iter()
            .any(|r| r["confirmation_code"] == code.as_str() && r["type"] == "export"),
        "{export:#}"
    );
    assert!(export["queued_messages"].is_array());
    assert!(export["not_kept"].is_string());
    // Every catalogued column marked as exported has its field in the export.
    for c in catalog::COLUMNS {
        if let Export::Field(pointer) = c.export {
            assert!(
                export.pointer(pointer).is_some(),
                "{}.{} should be at {pointer}: {export:#}",
                c.table,
                c.column
            );
        }
    }

    // Once only: the row is gone and the link says so.
    assert_eq!(count(&h, "SELECT count(*) FROM exports").await, 0);
    for response in [
        web.http.post(&url).send().await.unwrap(),
        web.http.get(&url).send().await.unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("does not work any more")
        );
    }
    let (status, subject): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT status, subject_ref FROM dsr_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), subject), ("completed", None));

    // An expired link is refused, and the export goes.
    let created = exports::store(h.pool(), &h.keyring, request_id, target, b"{}", 7)
        .await
        .unwrap();
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 second'")
        .execute(h.pool())
        .await
        .unwrap();
    let url = format!("{}/exports/{}", web.url, created.token);
    assert_eq!(
        web.http.get(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );
    assert_eq!(
        web.http.post(&url).send().await.unwrap().status(),
        StatusCode::GONE
    );
    assert_eq!(count(&h, "SELECT count(*) FROM exports").await, 0);
}

/// A `signed_request` as Facebook builds it, with any payload and secret.
pub(crate) fn signed_request(payload: &Value, secret: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signature}.{payload}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_deletion_request_is_filed_and_anything_else_is_refused_with_nothing_stored() {
    let mut h = harness().await;
    let web = Web::start(&mut h).await;
    let now = Utc::now().timestamp();
    let valid = json!({"algorithm": "HMAC-SHA256", "expires": now + 300, "issued_at": now,
                       "user_id": "218471"});
    let post = |form: Vec<(&'static str, String)>| {
        web.http
            .post(format!("{}/facebook/data-deletion", web.url))
            .form(&form)
            .send()
    };
    let stored = "SELECT (SELECT count(*) FROM dsr_requests)
                       + (SELECT count(*) FROM jobs WHERE kind = 'dsr')";

    let mut wrong_algorithm = valid.clone();
    wrong_algorithm["algorithm"] = json!("HMAC-SHA1");
    let mut expired = valid.clone();
    expired["expires"] = json!(now - 10);
    let refused = [
        ("bad signature", signed_request(&valid, "not-our-secret")),
        (
            "wrong algorithm",
            signed_request(&wrong_algorithm, &web.secret),
        ),
        ("expired", signed_request(&expired, &web.secret)),
        ("garbage", "garbage".to_owned()),
        ("garbage", "a.b".to_owned()),
    ];
    for (what, signed) in refused {
        let response = post(vec![("signed_request", signed)]).await.unwrap();
        assert!(
            response.status().is_client_error(),
            "{what}: {}",
            response.status()
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{what}: {body}");
    }
    let missing = post(vec![("other", "x".to_owned())]).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        count(&h, stored).await,
        0,
        "a refused request stored something"
    );

    let response = post(vec![(
        "signed_request",
        signed_request(&valid, &web.secret),
    )])
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("set-cookie").is_none());
    let answer: Value = response.json().await.unwrap();
    let code = answer["confirmation_code"].as_str().unwrap().to_owned();
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()) && code.len() >= 12);
    let url = answer["url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/deletion-status?code={code}")),
        "{url}"
    );
    let (kind, channel, status): (String, String, String) = sqlx::query_as(
        "SELECT type, channel, status FROM dsr_requests WHERE confirmation_code = $1",
    )
    .bind(&code)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), channel.as_str(), status.as_str()),
        ("erasure", "facebook_callback", "received")
    );
    let status_url = format!("{}/deletion-status?code={code}", web.url);
    let page = web.http.get(&status_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers().get("set-cookie").is_none());
    let text = page.text().await.unwrap();
    assert!(text.contains(&code) && text.contains("received"), "{text}");
    assert!(text.contains("app-scoped id"), "{text}");

    h.start_worker("it-privacy-callback").await;
    let (_, outcome) = completed(&h, "erasure", 1).await;
    assert!(outcome.starts_with("nothing held"), "{outcome}");
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM dsr_requests WHERE subject_ref IS NOT NULL"
        )
        .await,
        0
    );
    let text = web
        .http
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("completed"), "{text}");
    let unknown = web
        .http
        .get(format!("{}/deletion-status?code=NOSUCHCODE", web.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_objection_unsubscribes_from_every_campaign_of_the_page() {
    let mut h = harness().await;
    let page = h.add_page(FB_PAGE).await;
    let (target, other) = (Person::in_window("T"), Person::in_window("O"));
    h.seed(page, FB_PAGE, &[target.clone(), other.clone()])
        .await;
    let target_id = subscriber(&h, page, &target.psid).await.unwrap();
    let mut conn = h.pool().acquire().await.unwrap();
    dsr::file(
        &mut conn,
        &h.keyring,
        DsrType::Objection,
        Channel::Admin,
        &Subject {
            page_id: page,
            subscriber_id: Some(target_id),
            psid: Some(target.psid.clone()),
        },
        3,
    )
    .await
    .unwrap();
    h.start_worker("it-privacy-object").await;
    h.start_scheduler().await;
    let (_, outcome) = completed(&h, "objection", 1).await;
    assert_eq!(outcome, "unsubscribed from every campaign of the Page");
    wait_message(&h, &target.psid, "You are unsubscribed").await;

    let campaign = h.campaign(page, "News").await;
    let progress = h.wait_completed(campaign, WAIT).await;
    assert_eq!((progress.sent, progress.skipped), (1, 1), "{progress:?}");
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM deliveries WHERE campaign_id = $1 AND subscriber_id = $2",
    )
    .bind(campaign)
    .bind(target_id)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(reason, "unsubscribed");
}

/// A run repeated after its worker died finds the person's message claimed and does not send
/// it again: an erasure whose confirmation an interrupted run claimed completes without one
/// (and says it may have gone), an unsubscribe whose confirmation was claimed is not confirmed
/// twice; the same requests and unsubscribes unclaimed are told once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_an_interrupted_run_claimed_is_never_sent_again() {
    let mut h = harness().await;
    let page = h.add_page(FB_PAGE).await;
    let people: Vec<Person> = (0..4).map(|_| Person::in_window("Once")).collect();
    h.seed(page, FB_PAGE, &people).await;
    let mut ids = Vec::new();
    for person in &people {
        ids.push(subscriber(&h, page, &person.psid).await.unwrap());
    }
    let mut conn = h.pool().acquire().await.unwrap();
    let mut requests = Vec::new();
    for (person, id) in people.iter().zip(&ids).take(2) {
        let subject = Subject {
            page_id: page,
            subscriber_id: Some(*id),
            psid: Some(person.psid.clone()),
        };
        let filed = dsr::file(
            &mut conn,
            &h.keyring,
            DsrType::Erasure,
            Channel::Admin,
            &subject,
            3,
        )
        .await
        .unwrap();
        requests.push(filed.id);
    }
    for (n, id) in ids.iter().enumerate().skip(2) {
        let mut tx = h.pool().begin().await.unwrap();
        let via = moonengage_core::subscribers::Via::Keyword(9_000 + n as i64);
        moonengage_core::subscribers::unsubscribe(&mut tx, *id, page, via, 3)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // What a run that died after sending leaves behind: the first request's and the third
    // person's messages claimed.
    sqlx::query("UPDATE dsr_requests SET notice_claimed_at = now() WHERE id = $1")
        .bind(requests[0])
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE subscribers SET unsubscribe_confirmation_owed = false WHERE id = $1")
        .bind(ids[2])
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    h.start_worker("it-privacy-once").await;
    h.start_scheduler().await;
    completed(&h, "erasure", 2).await;
    wait_message(&h, &people[1].psid, "We are erasing all data").await;
    wait_message(&h, &people[3].psid, "You are unsubscribed").await;
    crate::helpers::eventually("the confirmations are settled", WAIT, || async {
        count(&h, "SELECT count(*) FROM jobs WHERE kind = 'notify'").await == 0
    })
    .await;
    assert_eq!(h.texts_to(&people[0].psid), Vec::<String>::new());
    assert_eq!(h.texts_to(&people[1].psid).len(), 1);
    assert_eq!(h.texts_to(&people[2].psid), Vec::<String>::new());
    assert_eq!(h.texts_to(&people[3].psid).len(), 1);
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM dsr_requests WHERE id = $1")
        .bind(requests[0])
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(
        outcome.contains("may have gone") && outcome.contains("not repeated"),
        "{outcome}"
    );
}
