//! A person's and a Page's life after the first send: the public URL production needs, halts
//! and resumes, Facebook's deletion callback mapped to Page-scoped ids, export links that wait
//! for the person's next message, retention of people, and service messages at the Page's rate.

use std::time::Duration;

use chrono::Utc;
use moonengage_core::campaigns;
use moonengage_core::pages::{self, NewPage};
use moonengage_core::subscribers::{self, NewSubscriber};
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_sandbox::{IdMappingRegistration, PageScopedId};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{
    Harness, Person, Process, bin_dir, eventually, free_port, moonengage, random_psid, repo_root,
    wait_completed,
};
use crate::privacy::{completed, signed_request, subscriber, token_in, wait_message};
use crate::webhook_client::{WebClient as Web, count, wait_count};

const FB_PAGE: &str = "3001";
const WAIT: Duration = Duration::from_secs(30);

/// The web process and a bearer token of the admin API.
async fn admin_web(h: &mut Harness) -> (Web, String) {
    let web = Web::start(h).await;
    let token = h.owner_token().await;
    (web, token)
}

/// Facebook's data-deletion callback about `user_id`, signed with our app secret; its answer.
async fn deletion_callback(web: &Web, user_id: &str) -> Value {
    let now = Utc::now().timestamp();
    let payload = json!({"algorithm": "HMAC-SHA256", "expires": now + 300, "issued_at": now,
                         "user_id": user_id});
    let response = web
        .http
        .post(format!("{}/facebook/data-deletion", web.url))
        .form(&[("signed_request", signed_request(&payload, &web.secret))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The environment of a production web process, every secret set except the public URL.
fn production_env(h: &Harness, port: u16) -> Vec<(String, String)> {
    let mut env = h.process_env();
    env.extend(
        [
            ("APP_ENV", "production".to_owned()),
            ("PORT", port.to_string()),
            ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
            ("MOONENGAGE__WEB__HOST", "127.0.0.1".to_owned()),
            ("MOONENGAGE__WEB__REQUIRE_HTTPS", "false".to_owned()),
            (
                "MOONENGAGE__MESSENGER__BASE_URL",
                "https://graph.facebook.com".to_owned(),
            ),
            (
                "MOONENGAGE__MESSENGER__APP_ID",
                "1000000000000001".to_owned(),
            ),
            (
                "MOONENGAGE__MESSENGER__APP_SECRET",
                "prod-secret".to_owned(),
            ),
            (
                "MOONENGAGE__MESSENGER__VERIFY_TOKEN",
                "prod-verify".to_owned(),
            ),
            (
                "MOONENGAGE__CRYPTO__AGE_IDENTITIES",
                h.settings.crypto.age_identities[0]
                    .expose_secret()
                    .to_owned(),
            ),
            (
                "MOONENGAGE__CRYPTO__BLIND_INDEX_KEY",
                h.settings.crypto.blind_index_key.expose_secret().to_owned(),
            ),
            (
                "MOONENGAGE__UNSUBSCRIBE__KEYS",
                "1:hCDjfk9RYvciWEdhJfp3FyY59Lnd293YqO6q3vgpAm8=".to_owned(),
            ),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_to_start_without_an_https_public_url() {
    let h = Harness::new().await;
    for public_url in [None, Some("http://engage.example.com")] {
        let mut env = production_env(&h, free_port());
        if let Some(url) = public_url {
            env.push(("MOONENGAGE__WEB__PUBLIC_BASE_URL".into(), url.into()));
        }
        let output = tokio::time::timeout(
            WAIT,
            Command::new(bin_dir().join("web"))
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .current_dir(repo_root())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("web refused to start at once")
        .expect("web is built (cargo build --workspace --bins)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{public_url:?}: {said}");
        assert!(
            said.contains("web.public_base_url") && said.contains("https://"),
            "{public_url:?}: {said}"
        );
    }

    // With one, the same production settings serve.
    let port = free_port();
    let mut env = production_env(&h, port);
    env.push((
        "MOONENGAGE__WEB__PUBLIC_BASE_URL".into(),
        "https://engage.example.com".into(),
    ));
    let _web = Process::start("web", &env);
    let http = reqwest::Client::new();
    eventually("production web answers /healthz", WAIT, || {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_link_points_at_the_address_the_web_process_binds() {
    let mut h = Harness::new().await;
    h.settings.web.host = "0.0.0.0".into();
    h.settings.web.public_base_url = None;
    h.settings.unsubscribe.base_url = None;
    let web = Web::start(&mut h).await;
    let page = h.add_page(FB_PAGE).await;
    let person = Person::in_window("Ann");
    h.seed(page, FB_PAGE, std::slice::from_ref(&person)).await;
    let id = subscriber(&h, page, &person.psid).await;
    let mut conn = h.pool().acquire().await.unwrap();
    dsr::file(
        &mut conn,
        &h.keyring,
        DsrType::Export,
        Channel::Admin,
        &Subject {
            page_id: page,
            subscriber_id: id,
            psid: Some(person.psid.clone()),
        },
        3,
    )
    .await
    .unwrap();
    h.start_worker("it-lifecycle-links").await;
    let link = wait_message(&h, &person.psid, "/exports/").await;

    let answer = deletion_callback(&web, "4001").await;
    let status_url = answer["url"].as_str().unwrap().to_owned();
    for rendered in h.texts_to(&person.psid).iter().chain([&status_url]) {
        assert!(!rendered.contains("0.0.0.0"), "{rendered}");
    }
    assert!(link.contains("http://localhost:8080/exports/"), "{link}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_halted_page_keeps_its_campaigns_and_its_resume_restarts_only_what_the_halt_paused() {
    let mut h = Harness::new().await;
    let (web, token) = admin_web(&mut h).await;
    let page = h.add_page(FB_PAGE).await;
    let people: Vec<Person> = (0..5)
        .map(|i| Person::in_window(&format!("P{i}")))
        .collect();
    h.seed(page, FB_PAGE, &people).await;
    let by_halt = h.campaign(page, "Hello from the halt").await;
    let by_admin = h.campaign(page, "Hello from the admin").await;
    campaigns::pause(h.pool(), h.workspace_id, by_admin)
        .await
        .unwrap();
    let paused = pages::halt(h.pool(), page, "page_fatal")
        .await
        .unwrap()
        .expect("halted now");
    assert_eq!(paused, vec![by_halt]);
    let jobs_before = count(&h, "SELECT count(*) FROM jobs").await;
    let post = |path: String| {
        web.http
            .post(format!("{}/api/v1{path}", web.url))
            .bearer_auth(&token)
            .send()
    };

    for campaign in [by_halt, by_admin] {
        let refused = post(format!("/campaigns/{campaign}/resume")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let body: Value = refused.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Page #{page} is halted")) && message.contains("page_fatal"),
            "{body}"
        );
        let progress = campaigns::progress(h.pool(), h.workspace_id, campaign)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(progress.state, campaigns::CampaignState::Paused);
    }
    assert_eq!(count(&h, "SELECT count(*) FROM jobs").await, jobs_before);
    assert_eq!(count(&h, "SELECT count(*) FROM deliveries").await, 0);

    let resumed = post(format!("/pages/{page}/resume")).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::NO_CONTENT);
    h.start_scheduler().await;
    h.start_worker("it-lifecycle-halt").await;
    let progress = wait_completed(h.pool(), h.workspace_id, by_halt, WAIT).await;
    assert_eq!(progress.sent, 5, "{progress:?}");
    let admin_paused: (String, Option<String>) =
        sqlx::query_as("SELECT state, paused_by FROM campaigns WHERE id = $1")
            .bind(by_admin)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(admin_paused, ("paused".into(), Some("admin".into())));
    for person in &people {
        assert_eq!(h.texts_to(&person.psid), ["Hello from the halt"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deletion_callback_erases_the_people_facebook_maps_the_app_scoped_id_to() {
    let mut h = Harness::new().await;
    let web = Web::start(&mut h).await;
    let page = h.add_page(FB_PAGE).await;
    let (gone, stays) = (Person::in_window("Gone"), Person::in_window("Stays"));
    h.seed(page, FB_PAGE, &[gone.clone(), stays.clone()]).await;
    h.sandbox.register_ids_for_pages(IdMappingRegistration {
        app_scoped_id: "7001".into(),
        pages: vec![
            PageScopedId {
                page_id: FB_PAGE.into(),
                psid: gone.psid.clone(),
            },
            PageScopedId {
                page_id: "9999".into(),
                psid: random_psid(),
            },
        ],
    });
    let answer = deletion_callback(&web, "7001").await;
    let code = answer["confirmation_code"].as_str().unwrap().to_owned();
    assert!(
        answer["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/deletion-status?code={code}")),
        "{answer}"
    );

    h.start_worker("it-lifecycle-callback").await;
    // The callback's request, then the erasure it filed for the mapped person.
    completed(&h, "erasure", 2).await;
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM dsr_requests WHERE confirmation_code = $1")
            .bind(&code)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(
        outcome.starts_with("mapped to 2 Page-scoped ids; erasure requests filed: #"),
        "{outcome}"
    );
    assert_eq!(subscriber(&h, page, &gone.psid).await, None);
    assert!(subscriber(&h, page, &stays.psid).await.is_some());
    let erased: String = sqlx::query_scalar(
        "SELECT outcome FROM dsr_requests WHERE confirmation_code <> $1 AND type = 'erasure'",
    )
    .bind(&code)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert!(erased.starts_with("erased: 1 subscriber"), "{erased}");

    // Facebook maps an unknown id to nobody: nothing held.
    deletion_callback(&web, "7002").await;
    let (_, outcome) = completed(&h, "erasure", 3).await;
    assert_eq!(outcome, "nothing held");
    assert_eq!(count(&h, "SELECT count(*) FROM subscribers").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_link_waits_for_the_next_message_and_admins_can_reissue_it() {
    let mut h = Harness::new().await;
    let (web, token) = admin_web(&mut h).await;
    let page = h.add_page(FB_PAGE).await;
    let away = Person::outside_window("Away");
    h.seed(page, FB_PAGE, std::slice::from_ref(&away)).await;
    h.start_worker("it-lifecycle-export").await;
    let filed: Value = web
        .http
        .post(format!("{}/api/v1/dsr", web.url))
        .bearer_auth(&token)
        .json(&json!({"type": "export", "page_id": page, "psid": away.psid}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request = filed["id"].as_i64().unwrap();
    let (_, outcome) = completed(&h, "export", 1).await;
    assert!(outcome.contains("link waiting"), "{outcome}");
    assert!(h.texts_to(&away.psid).is_empty());

    web.send_text(FB_PAGE, &away.psid, "m-away-1", "hello again")
        .await;
    let first = token_in(&wait_message(&h, &away.psid, "/exports/").await);

    let reissue = || {
        web.http
            .post(format!("{}/api/v1/dsr/{request}/export-link", web.url))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(reissue().await.unwrap().status(), StatusCode::ACCEPTED);
    eventually("the re-issued link arrives", WAIT, || async {
        h.texts_to(&away.psid).len() == 2
    })
    .await;
    moonengage(
        &h,
        &[
            "dsr",
            "reissue-export-link",
            "--workspace",
            &h.workspace_id.to_string(),
            &request.to_string(),
        ],
    )
    .await;
    eventually("the link re-issued from the CLI arrives", WAIT, || async {
        h.texts_to(&away.psid).len() == 3
    })
    .await;
    let links: Vec<String> = h.texts_to(&away.psid).iter().map(|t| token_in(t)).collect();
    assert_ne!(links[1], first);
    let download = |token: String| web.http.post(format!("{}/exports/{token}", web.url)).send();
    for old in [&links[0], &links[1]] {
        assert_ne!(
            download(old.clone()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let latest = download(links[2].clone()).await.unwrap();
    assert_eq!(latest.status(), StatusCode::OK);
    let json: Value = latest.json().await.unwrap();
    assert!(json.to_string().contains(&away.psid));

    let refused = reissue().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no export held"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_inactive_and_unsubscribed_people_keeping_only_a_blind_index() {
    let mut h = Harness::new().await;
    let page = h.add_page(FB_PAGE).await;
    let days_ago = |days: i64| Utc::now() - chrono::Duration::days(days);
    let active = Person::in_window("Active");
    let inactive = Person {
        last_interaction_at: days_ago(400),
        ..Person::in_window("Inactive")
    };
    let quit_long_ago = Person {
        last_interaction_at: days_ago(40),
        ..Person::in_window("Quit")
    };
    let quit_lately = Person::in_window("Lately");
    h.seed(
        page,
        FB_PAGE,
        &[
            active.clone(),
            inactive.clone(),
            quit_long_ago.clone(),
            quit_lately.clone(),
        ],
    )
    .await;
    for (person, at) in [(&quit_long_ago, days_ago(40)), (&quit_lately, days_ago(1))] {
        let id = subscriber(&h, page, &person.psid).await.unwrap();
        let mut conn = h.pool().acquire().await.unwrap();
        subscribers::unsubscribe_by_admin(&mut conn, page, &[id])
            .await
            .unwrap();
        sqlx::query("UPDATE subscribers SET unsubscribed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(h.pool())
            .await
            .unwrap();
    }
    h.start_scheduler().await;
    wait_count(&h, "SELECT count(*) FROM subscribers", 2, WAIT).await;
    assert!(subscriber(&h, page, &active.psid).await.is_some());
    assert!(subscriber(&h, page, &quit_lately.psid).await.is_some());
    let kept: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT page_id, psid_index FROM suppressions")
        .fetch_all(h.pool())
        .await
        .unwrap();
    assert_eq!(
        kept,
        [(page, h.keyring.blind_index(FB_PAGE, &quit_long_ago.psid))]
    );
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'suppressions' ORDER BY ordinal_position",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    assert_eq!(columns, ["page_id", "psid_index", "created_at"]);

    // Imported again, with fresh consent evidence: the person who said STOP stays unsubscribed.
    let again = |person: &Person| NewSubscriber {
        psid: person.psid.clone(),
        first_name: Some(person.first_name.clone()),
        opted_in_at: Utc::now(),
        consent_source: "import".into(),
        last_interaction_at: Utc::now(),
    };
    subscribers::insert_batch(
        h.pool(),
        &h.keyring,
        page,
        FB_PAGE,
        &[again(&quit_long_ago), again(&inactive)],
    )
    .await
    .unwrap();
    let pool = h.pool().clone();
    let status = |person: &Person| {
        let index = h.keyring.blind_index(FB_PAGE, &person.psid);
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM subscribers WHERE page_id = $1 AND psid_index = $2",
            )
            .bind(page)
            .bind(index)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(status(&quit_long_ago).await, "unsubscribed");
    assert_eq!(status(&inactive).await, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_messages_take_the_pages_limiter_slots_and_rates_are_capped_at_300() {
    let mut h = Harness::new().await;
    let (web, token) = admin_web(&mut h).await;
    let register = |send_rate: Option<i32>| {
        let mut body = json!({"fb_page_id": FB_PAGE, "name": "Moon Cafe",
                              "access_token": format!("sandbox-token-{FB_PAGE}")});
        if let Some(rate) = send_rate {
            body["send_rate"] = json!(rate);
        }
        web.http
            .post(format!("{}/api/v1/pages", web.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let too_fast = register(Some(301)).await.unwrap();
    assert_eq!(too_fast.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = too_fast.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_send_rate");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("300"),
        "{body}"
    );
    let created: Value = register(None).await.unwrap().json().await.unwrap();
    let page = created["id"].as_i64().unwrap();
    let listed: Value = web
        .http
        .get(format!("{}/api/v1/pages", web.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["send_rate"], 250);
    assert!(
        pages::register(
            h.pool(),
            &h.keyring,
            &NewPage {
                workspace_id: h.workspace_id,
                fb_page_id: "3002",
                name: "Too fast",
                access_token: &SecretString::from("sandbox-token-3002".to_owned()),
                send_rate: 1_000,
            },
        )
        .await
        .is_err(),
        "a Page was registered above Facebook's limit"
    );
    assert!(
        pages::set_send_rate(h.pool(), h.workspace_id, page, 301)
            .await
            .is_err()
    );

    // The Page's slots are booked for the next few seconds (as by campaign sends of other
    // workers): a STOP's confirmation waits for a slot instead of going at once.
    let person = Person::in_window("Stopper");
    h.seed(page, FB_PAGE, std::slice::from_ref(&person)).await;
    let redis =
        redis::Client::open(h.settings.redis.url.as_ref().unwrap().expose_secret()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let booked_until = secs * 1_000_000 + micros + 4_000_000;
    let _: () = redis::cmd("SET")
        .arg(format!("{}:rl:{page}:slot", h.settings.redis.key_prefix))
        .arg(booked_until)
        .arg("PX")
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    h.start_worker("it-lifecycle-limiter").await;
    web.send_text(FB_PAGE, &person.psid, "m-stop-1", "STOP")
        .await;
    wait_count(
        &h,
        "SELECT count(*) FROM jobs WHERE kind = 'notify' AND last_error = 'rate_limiter'",
        1,
        WAIT,
    )
    .await;
    assert!(
        h.texts_to(&person.psid).is_empty(),
        "the confirmation went past the Page's limiter"
    );
    wait_message(&h, &person.psid, "You are unsubscribed").await;
}
