//! What a new user hits first (issue 10): a person who opts in is greeted by name, an erasure
//! in the middle of a campaign lets it complete, one malformed event costs nothing else of its
//! delivery, a template that needs a name is refused at creation, and people come back.

use std::time::Duration;

use moonengage_core::subscribers;
use moonengage_sandbox::{ErrorSpec, Faults, ProfileRegistration};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Harness, Person, random_psid};
use crate::webhook_client::{WebClient, count, wait_count};

const GREETING: &str = "Hi {{first_name default=\"there\"}}!";

/// The subscriber id of a PSID on a Page, once a worker has opted them in.
async fn subscriber(h: &Harness, fb_page_id: &str, psid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT id FROM subscribers WHERE psid_index = $1")
        .bind(h.keyring.blind_index(fb_page_id, psid))
        .fetch_optional(h.pool())
        .await
        .unwrap()
}

/// A person's status.
async fn status(h: &Harness, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
        .bind(id)
        .fetch_one(h.pool())
        .await
        .unwrap()
}

/// Waits until every stored webhook event has been processed.
async fn wait_processed(h: &Harness, events: i64) {
    wait_count(
        h,
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL",
        events,
        Duration::from_secs(30),
    )
    .await;
}

/// A new PSID whose first name the sandbox's User Profile API answers.
fn named(h: &Harness, first_name: &str) -> String {
    let psid = random_psid();
    h.sandbox.register_profile(ProfileRegistration {
        psid: psid.clone(),
        first_name: first_name.into(),
    });
    psid
}

/// How many people have a (sealed) first name.
const NAMED: &str = "SELECT count(*) FROM subscribers WHERE first_name IS NOT NULL";

/// Waits until `n` people have a first name.
async fn wait_named(h: &Harness, n: i64) {
    wait_count(h, NAMED, n, Duration::from_secs(30)).await;
}

/// Waits until the profile look-up of one person stands as `sql_condition` says.
async fn wait_look_up(h: &Harness, sql_condition: &str) {
    wait_count(
        h,
        &format!("SELECT count(*) FROM jobs WHERE kind = 'profile' AND {sql_condition}"),
        1,
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_opts_in_by_message_gets_their_real_name_in_a_campaign_with_a_fallback() {
    let mut h = Harness::new().await;
    let page = h.add_page("10001").await;
    let web = WebClient::start(&mut h).await;
    h.start_worker("it-names-worker").await;
    h.start_scheduler().await;
    let psid = named(&h, "Selene");

    web.send_text("10001", &psid, "m_names_1", "hello").await;
    wait_named(&h, 1).await;
    let id = subscriber(&h, "10001", &psid).await.expect("opted in");
    let campaign = h.campaign(page, GREETING).await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!(
        (done.sent, done.failed, done.skipped),
        (1, 0, 0),
        "{done:?}"
    );
    let texts = h.texts_to(&psid);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("Hi Selene!"), "{texts:?}");
    // The name is sealed like the PSID.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT first_name FROM subscribers WHERE id = $1")
        .bind(id)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("Selene"));
    // The look-up was a job that succeeded (and was deleted).
    assert_eq!(
        count(&h, "SELECT count(*) FROM jobs WHERE kind = 'profile'").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_look_up_is_retried_while_facebook_fails_and_ends_when_the_person_is_unreachable()
{
    let mut h = Harness::new().await;
    h.add_page("10007").await;
    let web = WebClient::start(&mut h).await;
    h.start_worker("it-names-worker").await;
    // Facebook fails every call of the Page for a while (code 2: a service error).
    h.sandbox.set_faults(Faults {
        by_page: [("10007".to_owned(), ErrorSpec::new(2))].into(),
        ..Faults::default()
    });
    let psid = named(&h, "Rhea");
    web.send_text("10007", &psid, "m_retry_1", "hello").await;
    wait_look_up(
        &h,
        "status = 'queued' AND attempts >= 2 AND last_error = 'transient'",
    )
    .await;
    assert_eq!(count(&h, NAMED).await, 0);
    h.sandbox.set_faults(Faults::default());
    wait_named(&h, 1).await;

    // Someone Facebook says cannot be reached: one attempt, no retry, no name.
    h.sandbox.set_faults(Faults {
        by_page: [("10007".to_owned(), ErrorSpec::new(551))].into(),
        ..Faults::default()
    });
    let gone = random_psid();
    web.send_text("10007", &gone, "m_retry_2", "hello").await;
    wait_look_up(
        &h,
        "status = 'failed' AND attempts = 1 AND last_error = 'recipient_unreachable'",
    )
    .await;
    assert_eq!(count(&h, NAMED).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_does_not_render_pauses_its_campaign_and_spends_no_delivery() {
    let mut h = Harness::new().await;
    let page = h.add_page("10002").await;
    let nameless = Person::in_window("unused");
    h.seed(page, "10002", std::slice::from_ref(&nameless)).await;
    sqlx::query("UPDATE subscribers SET first_name = NULL")
        .execute(h.pool())
        .await
        .unwrap();
    // A campaign created before templates were checked for people without a name.
    let campaign: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (page_id, name, template, state, scheduled_at)
         VALUES ($1, 'legacy', 'Hi {{first_name}}!', 'scheduled', now()) RETURNING id",
    )
    .bind(page)
    .fetch_one(h.pool())
    .await
    .unwrap();
    h.start_worker("it-names-worker").await;
    h.start_scheduler().await;
    wait_count(
        &h,
        &format!("SELECT count(*) FROM campaigns WHERE id = {campaign} AND state = 'paused'"),
        1,
        Duration::from_secs(30),
    )
    .await;
    wait_count(
        &h,
        &format!(
            "SELECT count(*) FROM deliveries WHERE campaign_id = {campaign}
               AND status = 'queued' AND attempts = 0"
        ),
        1,
        Duration::from_secs(30),
    )
    .await;
    let progress = moonengage_core::campaigns::progress(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((progress.failed, progress.sent), (0, 0), "{progress:?}");
    assert!(h.texts_to(&nameless.psid).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_campaign_whose_template_needs_a_name_is_refused_naming_the_variable() {
    let mut h = Harness::new().await;
    let page = h.add_page("10003").await;
    let web = h.start_web().await;
    let token = h.owner_token().await;
    let create = |template: &'static str| {
        reqwest::Client::new()
            .post(format!("{web}/api/v1/campaigns"))
            .bearer_auth(&token)
            .json(&json!({"page_id": page, "name": "Spring", "template": template}))
            .send()
    };
    let refused = create("Hi {{first_name}}!").await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_template", "{error}");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(text.contains("`first_name`"), "{text}");
    assert!(text.contains("without a first name"), "{text}");
    assert_eq!(count(&h, "SELECT count(*) FROM campaigns").await, 0);

    for template in [
        "Hi {{first_name default=\"there\"}}!",
        "Hi{{#if first_name}} {{first_name}}{{/if}}!",
    ] {
        let created = create(template).await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED, "{template}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasing_one_of_300_queued_recipients_lets_the_campaign_complete_with_counters_adding_up() {
    let mut h = Harness::new().await;
    let page = h.add_page("10004").await;
    // 300 at 25/s: the last recipient's turn comes about 12 s after the first.
    sqlx::query("UPDATE pages SET send_rate = 25 WHERE id = $1")
        .bind(page)
        .execute(h.pool())
        .await
        .unwrap();
    let people: Vec<Person> = (0..300)
        .map(|i| Person::in_window(&format!("P{i}")))
        .collect();
    h.seed(page, "10004", &people).await;
    let leaving = people.last().unwrap().clone();
    let web = WebClient::start(&mut h).await;
    h.start_scheduler().await;
    let campaign = h.campaign(page, GREETING).await;
    wait_count(
        &h,
        &format!(
            "SELECT count(*) FROM deliveries WHERE campaign_id = {campaign} AND status = 'queued'"
        ),
        300,
        Duration::from_secs(30),
    )
    .await;
    h.start_worker("it-names-worker").await;
    web.send_text("10004", &leaving.psid, "m_erase_1", "delete my data")
        .await;
    wait_count(
        &h,
        "SELECT count(*) FROM dsr_requests WHERE type = 'erasure' AND status = 'completed'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert!(
        h.texts_to(&leaving.psid)
            .iter()
            .all(|text| !text.starts_with("Hi ")),
        "the campaign reached the person before their erasure (test precondition)"
    );

    let done = h.wait_completed(campaign, Duration::from_secs(90)).await;
    assert_eq!(done.recipients, 300);
    assert_eq!(
        (done.sent, done.skipped, done.failed, done.unknown),
        (299, 1, 0, 0),
        "{done:?}"
    );
    assert_eq!(done.finished(), done.recipients);
    let completed_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT completed_at FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert!(completed_at.is_some(), "retention counts from completed_at");
    assert!(
        h.texts_to(&leaving.psid)
            .iter()
            .all(|text| !text.starts_with("Hi ")),
        "no campaign message reached the erased person"
    );
    assert_eq!(subscriber(&h, "10004", &leaving.psid).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_event_next_to_a_good_one_costs_nothing_and_a_resend_stores_nothing_twice() {
    let mut h = Harness::new().await;
    h.add_page("10005").await;
    let web = WebClient::start(&mut h).await;
    h.start_worker("it-names-worker").await;
    let psid = random_psid();
    let now = chrono::Utc::now().timestamp_millis();
    let delivery = json!({
        "object": "page",
        "entry": [{
            "id": "10005",
            "time": now,
            "messaging": [
                {"recipient": {"id": "10005"}, "timestamp": now,
                 "message": {"mid": "m_no_sender", "text": "who am I"}},
                {"sender": {"id": psid}, "recipient": {"id": "10005"}, "timestamp": now,
                 "message": {"mid": "m_good_1", "text": "stop"}}
            ]
        }]
    });
    let first = web.deliver(&delivery).await;
    assert_eq!(first.status(), StatusCode::OK);
    let answer: Value = first.json().await.unwrap();
    assert_eq!(
        (&answer["stored"], &answer["malformed"]),
        (&json!(1), &json!(1)),
        "{answer}"
    );
    wait_processed(&h, 1).await;

    // Facebook resends the same bytes: accepted again, nothing stored twice.
    let again = web.deliver(&delivery).await;
    assert_eq!(again.status(), StatusCode::OK);
    let answer: Value = again.json().await.unwrap();
    assert_eq!(
        (&answer["stored"], &answer["duplicates"]),
        (&json!(0), &json!(1)),
        "{answer}"
    );
    assert_eq!(count(&h, "SELECT count(*) FROM webhook_events").await, 1);
    // The good event was processed: its STOP (from someone new) opted nobody in, and a
    // message from them would have; the event row keeps only its hash.
    let mid_hash: Vec<u8> = sqlx::query_scalar("SELECT mid_hash FROM webhook_events")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(mid_hash, Sha256::digest(b"m_good_1").to_vec());
    web.send_text("10005", &psid, "m_good_2", "hello").await;
    wait_processed(&h, 2).await;
    assert!(subscriber(&h, "10005", &psid).await.is_some());

    // Counted, by problem, in a metric.
    let metrics = reqwest::get(format!("{}/metrics", web.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let malformed: f64 = metrics
        .lines()
        .find(|line| {
            line.starts_with(
                "moonengage_webhook_events_malformed_total{problem=\"missing_sender\"}",
            )
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .expect("the malformed-event metric is exported");
    assert!(malformed >= 2.0, "{malformed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_come_back_are_active_again_and_a_stop_needs_start() {
    let mut h = Harness::new().await;
    let page = h.add_page("10006").await;
    let unreachable = Person::outside_window("Una");
    let objector = Person::outside_window("Otto");
    let stopper = Person::outside_window("Stef");
    let silent = Person::outside_window("Sil");
    h.seed(
        page,
        "10006",
        &[
            unreachable.clone(),
            objector.clone(),
            stopper.clone(),
            silent.clone(),
        ],
    )
    .await;
    let id = |person: &Person| {
        let h = &h;
        let psid = person.psid.clone();
        async move { subscriber(h, "10006", &psid).await.unwrap() }
    };
    let (una, otto, stef, sil) = (
        id(&unreachable).await,
        id(&objector).await,
        id(&stopper).await,
        id(&silent).await,
    );
    subscribers::mark_unreachable(h.pool(), una).await.unwrap();
    let web = WebClient::start(&mut h).await;
    h.start_worker("it-names-worker").await;
    // An objection filed through the admin API, and two STOPs written in Messenger.
    let token = h.owner_token().await;
    let objection = web
        .http
        .post(format!("{}/api/v1/dsr", web.url))
        .bearer_auth(&token)
        .json(&json!({"type": "objection", "page_id": page, "psid": objector.psid}))
        .send()
        .await
        .unwrap();
    assert_eq!(objection.status(), StatusCode::CREATED);
    web.send_text("10006", &stopper.psid, "m_back_stop1", "STOP")
        .await;
    web.send_text("10006", &silent.psid, "m_back_stop2", "stop")
        .await;
    wait_processed(&h, 2).await;
    wait_count(
        &h,
        "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'",
        3,
        Duration::from_secs(30),
    )
    .await;

    // They write again.
    web.send_text("10006", &unreachable.psid, "m_back_1", "hi, me again")
        .await;
    web.send_text("10006", &objector.psid, "m_back_2", "hello?")
        .await;
    web.send_text("10006", &stopper.psid, "m_back_3", "Start")
        .await;
    web.send_text("10006", &silent.psid, "m_back_4", "thanks")
        .await;
    wait_processed(&h, 6).await;
    for (who, expected) in [
        (una, "active"),
        (otto, "active"),
        (stef, "active"),
        (sil, "unsubscribed"),
    ] {
        assert_eq!(status(&h, who).await, expected, "subscriber {who}");
    }
    // Their message is their new consent evidence.
    let (source, evidence, unsubscribed_at): (
        String,
        Vec<u8>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "SELECT consent_source, consent_mid_hash, unsubscribed_at FROM subscribers WHERE id = $1",
    )
    .bind(una)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(source, "messenger");
    assert_eq!(evidence, Sha256::digest(b"m_back_1").to_vec());
    assert_eq!(unsubscribed_at, None);
    let evidence: Vec<u8> =
        sqlx::query_scalar("SELECT consent_mid_hash FROM subscribers WHERE id = $1")
            .bind(stef)
            .fetch_one(h.pool())
            .await
            .unwrap();
    assert_eq!(evidence, Sha256::digest(b"m_back_3").to_vec());

    // The next campaign reaches those who came back, and not the one who only said thanks.
    h.start_scheduler().await;
    let campaign = h.campaign(page, GREETING).await;
    let done = h.wait_completed(campaign, Duration::from_secs(60)).await;
    assert_eq!((done.sent, done.skipped), (3, 1), "{done:?}");
    for person in [&unreachable, &objector, &stopper] {
        assert!(
            h.texts_to(&person.psid)
                .iter()
                .any(|text| text.starts_with("Hi ")),
            "{} was not sent the campaign",
            person.first_name
        );
    }
    assert!(
        h.texts_to(&silent.psid)
            .iter()
            .all(|text| !text.starts_with("Hi ")),
        "a STOP'd person who did not write start got the campaign"
    );
}
