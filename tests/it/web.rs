//! The web process, in-process on a free port against real Postgres: webhooks (signature, size,
//! shape, dedupe, STOP), unsubscribe pages, the admin API and its hardening.

use std::time::{Duration, Instant};

use chrono::Utc;
use moonengage_privacy::unsubscribe::{UnsubscribeClaims, UnsubscribeSettings, UnsubscribeSigner};
use moonengage_sandbox::MessageFilter;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Harness, Person, moonengage, random_psid};
use crate::webhook_client::{
    WEBHOOK, WebClient as Web, assert_no_cookie, count, message, signature, wait_count,
};

async fn subscriber_id(h: &Harness, page: i64, fb: &str, psid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM subscribers WHERE page_id = $1 AND psid_index = $2")
        .bind(page)
        .bind(h.keyring.blind_index(fb, psid))
        .fetch_optional(h.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_handshake_echoes_the_challenge_only_for_our_token() {
    let mut h = Harness::new().await;
    let web = Web::start(&mut h).await;
    let token = h.settings.messenger.verify_token.expose_secret().to_owned();
    let get = |token: String| {
        web.http
            .get(format!("{}{WEBHOOK}", web.url))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token.as_str()),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let ok = get(token.clone()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let refused = get(format!("{token}x")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_events_are_stored_queued_and_processed_without_keeping_the_text() {
    let mut h = Harness::new().await;
    let page = h.add_page("1001").await;
    let web = Web::start(&mut h).await;
    let (alice, bob) = (random_psid(), random_psid());
    let sent_at = Utc::now().timestamp_millis();
    let payload = json!({
        "object": "page",
        "entry": [
            {"id": "1001", "time": sent_at, "messaging": [{
                "sender": {"id": alice}, "recipient": {"id": "1001"}, "timestamp": sent_at,
                "message": {"mid": "m_alice_1", "text": "Quixotic hello from Alice"}
            }]},
            {"id": "1001", "time": sent_at, "messaging": [
                {"sender": {"id": bob}, "recipient": {"id": "1001"}, "timestamp": sent_at,
                 "postback": {"mid": "m_bob_1", "title": "Get started", "payload": "GET_STARTED"}},
                {"sender": {"id": "1001"}, "recipient": {"id": bob}, "timestamp": sent_at,
                 "message": {"mid": "m_echo_1", "text": "echo", "is_echo": true}}
            ]}
        ]
    });
    let response = web.deliver(&payload).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["stored"], 2, "{answer}");
    // Each stored event is queued work by itself: no job row per event.
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
        )
        .await,
        2
    );
    assert_eq!(count(&h, "SELECT count(*) FROM jobs").await, 0);

    h.start_worker("it-web-worker").await;
    wait_count(
        &h,
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL AND psid IS NULL",
        2,
        Duration::from_secs(20),
    )
    .await;
    let alice_id = subscriber_id(&h, page, "1001", &alice)
        .await
        .expect("alice opted in");
    assert!(subscriber_id(&h, page, "1001", &bob).await.is_some());
    let (status, source, mid_hash, opted_in, last): (
        String,
        String,
        Vec<u8>,
        chrono::DateTime<Utc>,
        chrono::DateTime<Utc>,
    ) = sqlx::query_as(
        "SELECT status, consent_source, consent_mid_hash, opted_in_at, last_interaction_at
         FROM subscribers WHERE id = $1",
    )
    .bind(alice_id)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!((status.as_str(), source.as_str()), ("active", "messenger"));
    assert_eq!(mid_hash, Sha256::digest(b"m_alice_1").to_vec());
    assert_eq!(opted_in.timestamp_millis(), sent_at);
    assert_eq!(last.timestamp_millis(), sent_at);

    let dump = tokio::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&h.db.url)
        .output()
        .await
        .expect("pg_dump is installed");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("webhook_events"), "the dump holds the data");
    for secret in ["Quixotic", alice.as_str(), bob.as_str(), "m_alice_1"] {
        assert!(!dump.contains(secret), "`{secret}` is stored in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_oversized_and_malformed_bodies_are_refused_and_nothing_is_stored() {
    let mut h = Harness::new().await;
    h.add_page("1002").await;
    let web = Web::start(&mut h).await;
    let payload = message("1002", &random_psid(), "m_refused", "hello");
    let body = serde_json::to_vec(&payload).unwrap();

    let wrong_secret = web
        .post_raw(body.clone(), Some(signature("not-the-secret", &body)))
        .await;
    assert_eq!(wrong_secret.status(), StatusCode::FORBIDDEN);
    let error: Value = wrong_secret.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");

    let missing = web.post_raw(body.clone(), None).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);

    let garbage = web
        .post_raw(body.clone(), Some("sha256=nothex".into()))
        .await;
    assert_eq!(garbage.status(), StatusCode::FORBIDDEN);

    // Meta signs its escaped-unicode bytes; a signature over re-serialised JSON does not match.
    let raw = br#"{"object":"page","entry":[{"id":"1002","messaging":[{"sender":{"id":"123"},"timestamp":1,"message":{"mid":"m_caf\u00e9","text":"caf\u00e9"}}]}]}"#.to_vec();
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&raw).unwrap()).unwrap();
    assert_ne!(raw, reserialised);
    let resigned = web
        .post_raw(raw.clone(), Some(signature(&web.secret, &reserialised)))
        .await;
    assert_eq!(resigned.status(), StatusCode::FORBIDDEN);

    let limit = h.settings.web.max_body_bytes;
    let mut big = payload.clone();
    big["padding"] = Value::String("x".repeat(limit));
    let oversized = web.deliver(&big).await;
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let malformed = b"{\"object\":\"page\",\"entry\":[".to_vec();
    let bad_json = web
        .post_raw(malformed.clone(), Some(signature(&web.secret, &malformed)))
        .await;
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad_json.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_request");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid webhook payload"),
        "{error}"
    );

    assert_eq!(count(&h, "SELECT count(*) FROM webhook_events").await, 0);
    // The same raw bytes with a signature over them are accepted: the refusals were about the
    // signature, not the payload.
    let accepted = web
        .post_raw(raw.clone(), Some(signature(&web.secret, &raw)))
        .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(count(&h, "SELECT count(*) FROM webhook_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_three_times_is_processed_once() {
    let mut h = Harness::new().await;
    let page = h.add_page("1003").await;
    let known = Person::outside_window("Known");
    h.seed(page, "1003", std::slice::from_ref(&known)).await;
    let web = Web::start(&mut h).await;
    h.start_worker("it-web-worker").await;
    let newcomer = random_psid();

    let deliveries = [
        message("1003", &known.psid, "m_known_1", "hi again"),
        message("1003", &newcomer, "m_new_1", "hello"),
    ];
    for round in 0..3 {
        for payload in &deliveries {
            let response = web.deliver(payload).await;
            assert_eq!(response.status(), StatusCode::OK);
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["stored"], if round == 0 { 1 } else { 0 });
            assert_eq!(answer["duplicates"], if round == 0 { 0 } else { 1 });
        }
    }
    assert_eq!(count(&h, "SELECT count(*) FROM webhook_events").await, 2);
    wait_count(
        &h,
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL",
        2,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(count(&h, "SELECT count(*) FROM subscribers").await, 2);
    let in_window: bool = sqlx::query_scalar(
        "SELECT last_interaction_at > now() - interval '1 minute' FROM subscribers WHERE id = $1",
    )
    .bind(subscriber_id(&h, page, "1003", &known.psid).await.unwrap())
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert!(in_window, "the message opened the known person's window");
    // Redelivered after processing: still recognised.
    let late = web.deliver(&deliveries[1]).await;
    let answer: Value = late.json().await.unwrap();
    assert_eq!(answer["duplicates"], 1);
    // The redelivery queued nothing: both events stay processed.
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_in_the_middle_of_a_campaign_stops_it_for_that_person_and_confirms() {
    let mut h = Harness::new().await;
    h.sandbox.set_latency(Duration::from_millis(20));
    h.settings.worker.concurrency = 4;
    let page = h.add_page("1004").await;
    let people: Vec<Person> = (0..600)
        .map(|i| Person::in_window(&format!("P{i}")))
        .collect();
    h.seed(page, "1004", &people).await;
    let stopper = people.last().unwrap().clone();
    let web = Web::start(&mut h).await;
    h.start_scheduler().await;
    h.start_worker("it-web-worker").await;
    let campaign = h
        .campaign(page, "Hello {{first_name default=\"there\"}}")
        .await;

    h.wait_received(20).await;
    let response = web
        .deliver(&message("1004", &stopper.psid, "m_stop", "  Stop "))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stopper_id = subscriber_id(&h, page, "1004", &stopper.psid)
        .await
        .unwrap();
    wait_count(
        &h,
        &format!(
            "SELECT count(*) FROM subscribers WHERE id = {stopper_id} AND status = 'unsubscribed'"
        ),
        1,
        Duration::from_secs(20),
    )
    .await;
    let to_stopper = MessageFilter {
        psid: Some(stopper.psid.clone()),
        ..MessageFilter::default()
    };
    assert!(
        h.sandbox.stats().received_total < 600,
        "the campaign was still running when STOP took effect"
    );
    assert!(
        h.sandbox
            .messages(&to_stopper)
            .iter()
            .all(|m| !m.text.starts_with("Hello")),
        "the campaign reached the person before STOP (test precondition)"
    );

    let done = h.wait_completed(campaign, Duration::from_secs(90)).await;
    assert_eq!((done.recipients, done.sent + done.skipped), (600, 600));
    let received = h.sandbox.messages(&to_stopper);
    assert_eq!(received.len(), 1, "only the confirmation: {received:?}");
    assert!(
        received[0].text.contains("unsubscribed"),
        "{}",
        received[0].text
    );
    assert!(received[0].quick_replies.is_empty());
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM deliveries WHERE campaign_id = $1 AND subscriber_id = $2",
    )
    .bind(campaign)
    .bind(stopper_id)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(reason, "unsubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_links_work_without_cookies_and_refuse_forged_tokens() {
    let mut h = Harness::new().await;
    let page = h.add_page("1005").await;
    let (ann, bo) = (Person::in_window("Ann"), Person::in_window("Bo"));
    h.seed(page, "1005", &[ann.clone(), bo.clone()]).await;
    let web = Web::start(&mut h).await;
    let signer = UnsubscribeSigner::new(&h.settings.unsubscribe).unwrap();
    let token_for = |subscriber_id| {
        signer.sign(&UnsubscribeClaims {
            subscriber_id,
            page_id: page,
            campaign_id: 0,
        })
    };
    let ann_id = subscriber_id(&h, page, "1005", &ann.psid).await.unwrap();
    let bo_id = subscriber_id(&h, page, "1005", &bo.psid).await.unwrap();
    let status = |id: i64| {
        let pool = h.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let get = |path: String| web.http.get(format!("{}{path}", web.url)).send();
    let post = |path: String| web.http.post(format!("{}{path}", web.url)).send();

    let page_html = get(format!("/u/{}", token_for(ann_id))).await.unwrap();
    assert_no_cookie(&page_html);
    assert_eq!(page_html.status(), StatusCode::OK);
    assert_eq!(page_html.headers()["x-content-type-options"], "nosniff");
    assert!(
        page_html.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = page_html.text().await.unwrap();
    assert!(
        html.contains("method=\"post\"") && !html.contains("<script"),
        "{html}"
    );
    assert_eq!(
        status(ann_id).await,
        "active",
        "showing the page changes nothing"
    );

    for _ in 0..2 {
        let confirmed = post(format!("/u/{}", token_for(ann_id))).await.unwrap();
        assert_no_cookie(&confirmed);
        assert_eq!(confirmed.status(), StatusCode::OK);
        assert!(
            confirmed
                .text()
                .await
                .unwrap()
                .contains("You are unsubscribed")
        );
        assert_eq!(status(ann_id).await, "unsubscribed");
    }

    // RFC 8058 one-click: a POST with the form body, without showing the page.
    let one_click = web
        .http
        .post(format!("{}/u/{}", web.url, token_for(bo_id)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_no_cookie(&one_click);
    assert_eq!(one_click.status(), StatusCode::OK);
    assert_eq!(status(bo_id).await, "unsubscribed");

    let forger = UnsubscribeSigner::new(&UnsubscribeSettings {
        keys: foreign_keys(),
        current_key: 1,
        base_url: None,
    })
    .unwrap();
    let forged = forger.sign(&UnsubscribeClaims {
        subscriber_id: ann_id,
        page_id: page,
        campaign_id: 0,
    });
    for bad in [forged, "not-a-token".to_owned()] {
        for response in [
            get(format!("/u/{bad}")).await.unwrap(),
            post(format!("/u/{bad}")).await.unwrap(),
        ] {
            assert_no_cookie(&response);
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(response.text().await.unwrap().contains("not valid"));
        }
    }

    let erased = get(format!("/u/{}", token_for(ann_id + bo_id + 1000)))
        .await
        .unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert!(
        erased
            .text()
            .await
            .unwrap()
            .contains("nothing to unsubscribe")
    );

    for path in ["/healthz", "/nowhere", WEBHOOK, "/api/v1/openapi.json"] {
        assert_no_cookie(&get(path.to_owned()).await.unwrap());
    }
}

/// An unsubscribe key this deployment does not have.
fn foreign_keys() -> Vec<moonengage_privacy::unsubscribe::UnsubscribeKey> {
    vec![moonengage_privacy::unsubscribe::UnsubscribeKey {
        id: 1,
        secret: secrecy::SecretString::from("Zm9yZ2VyLWtleS1mb3JnZXIta2V5LWZvcmdlci1rZXk="),
    }]
}

/// Makes a new owner of the harness workspace with the real CLI, as an operator bootstraps the
/// API, and returns the owner's first token.
async fn cli_token(h: &Harness) -> String {
    let workspace = h.workspace_id.to_string();
    let printed = moonengage(
        h,
        &[
            "workspace",
            "add-owner",
            "--workspace",
            &workspace,
            "--email",
            "cli@it.example",
        ],
    )
    .await;
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.first(), Some(&workspace.as_str()), "{printed}");
    lines.get(1).expect("a token line").trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_missing_and_revoked_tokens_and_names_template_errors() {
    let mut h = Harness::new().await;
    let page = h.add_page("1006").await;
    let web = Web::start(&mut h).await;
    let token = cli_token(&h).await;
    let api = |path: &str| format!("{}/api/v1{path}", web.url);

    let missing = web.http.get(api("/pages")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthorized");
    let bogus = web
        .http
        .get(api("/pages"))
        .bearer_auth("me_bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);

    let listed = web
        .http
        .get(api("/pages"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let pages: Value = listed.json().await.unwrap();
    assert_eq!(pages[0]["fb_page_id"], "1006");
    assert!(pages[0].get("access_token").is_none());

    let broken = web
        .http
        .post(api("/campaigns"))
        .bearer_auth(&token)
        .json(&json!({"page_id": page, "name": "x", "template": "Hi {{nickname}}!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = broken.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_template");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nickname"),
        "{error}"
    );
    assert_eq!(count(&h, "SELECT count(*) FROM campaigns").await, 0);

    let bad_body = web
        .http
        .post(api("/campaigns"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad_body.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_request");

    let logout = web
        .http
        .post(api("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let revoked = web
        .http
        .get(api("/pages"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        StatusCode::UNAUTHORIZED,
        "logging out takes effect at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_campaign_through_the_admin_api_alone() {
    let mut h = Harness::new().await;
    let web = Web::start(&mut h).await;
    h.start_scheduler().await;
    h.start_worker("it-web-worker").await;
    let token = cli_token(&h).await;
    let http = &web.http;
    let api = |path: String| format!("{}/api/v1{path}", web.url);

    let created = http
        .post(api("/pages".into()))
        .bearer_auth(&token)
        .json(&json!({"fb_page_id": "1007", "name": "Moon Cafe",
                      "access_token": "sandbox-token-1007", "send_rate": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let page = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();

    let now = Utc::now();
    let psids: Vec<String> = (0..30).map(|_| random_psid()).collect();
    let mut csv = "psid,first_name,opted_in_at,consent_source,last_interaction_at\n".to_owned();
    for (i, psid) in psids.iter().enumerate() {
        csv.push_str(&format!(
            "{psid},Guest{i},{},messenger,{}\n",
            (now - chrono::Duration::days(2)).to_rfc3339(),
            (now - chrono::Duration::minutes(5)).to_rfc3339()
        ));
    }
    let import = |body: String, content_type: &'static str| {
        http.post(api(format!("/pages/{page}/subscribers/import")))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // A row without consent evidence: reported by its line, nothing imported.
    let bad_csv = format!("{csv}{},NoConsent,,,\n", random_psid());
    let refused = import(bad_csv, "text/csv").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = refused.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 32") && message.contains("opted_in_at"),
        "{message}"
    );
    let bad_json = json!([
        {"psid": random_psid(), "opted_in_at": now.to_rfc3339(), "consent_source": "import"},
        {"psid": random_psid(), "opted_in_at": now.to_rfc3339()}
    ]);
    let refused = import(bad_json.to_string(), "application/json")
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("row 2"),
        "{error}"
    );
    assert_eq!(count(&h, "SELECT count(*) FROM subscribers").await, 0);

    let imported = import(csv, "text/csv").await.unwrap();
    assert_eq!(imported.status(), StatusCode::OK);
    assert_eq!(imported.json::<Value>().await.unwrap()["imported"], 30);
    let counts: Value = http
        .get(api(format!("/pages/{page}/subscribers/counts")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (counts["active"].as_i64(), counts["in_window"].as_i64()),
        (Some(30), Some(30))
    );

    let campaign = http
        .post(api("/campaigns".into()))
        .bearer_auth(&token)
        .json(&json!({"page_id": page, "name": "Spring", "template": "Hi {{first_name default=\"there\"}}!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(campaign.status(), StatusCode::CREATED);
    let campaign = campaign.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let scheduled = http
        .post(api(format!("/campaigns/{campaign}/schedule")))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), StatusCode::NO_CONTENT);

    let started = Instant::now();
    let view = loop {
        let view: Value = http
            .get(api(format!("/campaigns/{campaign}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["state"] == "completed" {
            break view;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (view["sent"].as_i64(), view["recipients"].as_i64()),
        (Some(30), Some(30))
    );
    assert_eq!(view["progress_percent"], 100.0);
    let received = h.sandbox.messages(&MessageFilter::default());
    assert_eq!(received.len(), 30);
    assert!(
        received
            .iter()
            .all(|m| psids.contains(&m.psid) && m.text.starts_with("Hi Guest"))
    );

    let document: Value = http
        .get(api("/openapi.json".into()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/campaigns/{id}",
        "/api/v1/pages/{id}/subscribers/import",
        "/api/v1/dsr",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_webhooks_are_each_stored_once() {
    let mut h = Harness::new().await;
    h.add_page("1008").await;
    let web = Web::start(&mut h).await;
    let deliveries = (0..200).map(|i| {
        let payload = message("1008", &random_psid(), &format!("m_burst_{i}"), "hi");
        let web = &web;
        async move { web.deliver(&payload).await.status() }
    });
    let statuses = futures::future::join_all(deliveries).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        count(&h, "SELECT count(DISTINCT mid_hash) FROM webhook_events").await,
        200
    );
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL"
        )
        .await,
        200
    );
    h.start_worker("it-web-worker").await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers",
        200,
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_plain_http_is_redirected_and_https_gets_hsts() {
    let mut h = Harness::new().await;
    h.settings.web.require_https = true;
    h.settings.web.public_base_url = Some("https://engage.example.com".into());
    let web = Web::start(&mut h).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain = http
        .get(format!("{}/healthz?x=1", web.url))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        plain.headers()["location"],
        "https://engage.example.com/healthz?x=1"
    );
    let secure = http
        .get(format!("{}/healthz", web.url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(secure.status(), StatusCode::OK);
    assert!(
        secure.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert_no_cookie(&secure);
}
