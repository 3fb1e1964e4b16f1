//! The policy's public lines: the privacy page (versions from `policy_versions`, the only
//! processor, retention read from the settings, the breach protocol), and the breach protocol
//! itself — the incident register through the admin API and the CLI, the admins' e-mails (a
//! real SMTP server) at declaration and when the 72 hours near, the report-deadline gauge of the
//! scheduler process, and the notice to the people affected through Messenger, window-aware.

use chrono::{Duration as Age, Utc};
use moonengage_privacy::policy::{self, NewVersion};
use moonengage_sandbox::MessageFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::eventually;
use crate::helpers::{Harness, Person, Process, bin_dir, free_port};
use crate::notifications::{Smtp, secs, write_to_page};
use crate::webhook_client::assert_no_cookie;

async fn publish(h: &Harness, version: &str, summary: &str) -> i64 {
    policy::publish(
        h.pool(),
        &NewVersion {
            version,
            summary,
            url: "https://moon.example/privacy",
        },
        h.settings.queue.max_attempts,
    )
    .await
    .unwrap()
    .id
}

async fn html(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url).await.unwrap();
    assert_no_cookie(&response);
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_page_states_its_version_the_only_processor_retention_from_settings_and_the_breach_protocol()
 {
    let mut h = Harness::new().await;
    // Figures nobody would hard-code: the page must read them from the settings.
    h.settings.retention.deliveries_days = 47;
    h.settings.retention.webhook_events_secs = 3 * 3_600;
    h.settings.retention.finished_jobs_secs = 5 * 86_400;
    h.settings.privacy.export_ttl_days = 11;
    h.settings.retention.account_activity_days = 53;
    let older = publish(&h, "2026-11", "First version.").await;
    let current = publish(&h, "2026-12", "Delivery records are kept for less time.").await;
    let web = h.start_web().await;

    let (status, page) = html(&format!("{web}/privacy")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let today = Utc::now().format("%-d %B %Y").to_string();
    for line in [
        "Version <strong>2026-12</strong>, published",
        today.as_str(),
        "Delivery records are kept for less time.",
        // What is collected.
        "your Messenger id for that Page",
        "your first name",
        "never what you wrote",
        // The only processor.
        "Facebook (Meta) is the only processor",
        // Retention, from the settings.
        "47 days after the campaign ended",
        "3 hours",
        "11 days at most",
        "A task about you that failed for good: 5 days",
        // Account holders' activity: coarse origin, retention from the settings, one use.
        "security events are logged with the time and a coarse origin",
        "/24 for IPv4, /48 for IPv6",
        "browser's family, never the full address",
        "kept 53 days, shown to you",
        "used for nothing else",
        // The breach protocol.
        "incident register",
        "within 72 hours of detection",
        "told in Messenger",
        // The older version is reachable.
        &format!("<a href=\"/privacy/versions/{older}\">Version 2026-11</a>"),
    ] {
        assert!(page.contains(line), "`{line}` missing from\n{page}");
    }
    assert!(!page.contains("This is an older version"));

    let (status, old) = html(&format!("{web}/privacy/versions/{older}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(old.contains("Version <strong>2026-11</strong>"), "{old}");
    assert!(old.contains("First version."));
    assert!(old.contains("This is an older version"));
    assert!(old.contains(&format!("/privacy/versions/{current}\">Version 2026-12")));
    let (status, _) = html(&format!("{web}/privacy/versions/{}", current + 10)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The admin API of a harness's web process, with a bearer token.
struct Admin {
    web: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.web))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The value of a metric without labels in the Prometheus text of `url`.
async fn gauge(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
}

fn incident_notices(h: &Harness, page: &str, psid: &str) -> usize {
    h.sandbox
        .messages(&MessageFilter {
            page_id: Some(page.into()),
            psid: Some(psid.into()),
        })
        .iter()
        .filter(|m| m.text.contains("security incident"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_registered_e_mailed_watched_against_its_72_hours_and_told_to_the_people_affected()
 {
    let mut h = Harness::new().await;
    let smtp_port = free_port();
    let smtp = Smtp::start(smtp_port).await;
    h.settings.email.smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    h.settings.email.admins = vec!["ops@example.com".into()];
    h.settings.email.timeout_ms = 2_000;
    let (moon, sun) = (h.add_page("4101").await, h.add_page("4102").await);
    let (ann, bo, late) = (
        Person::in_window("Ann"),
        Person::in_window("Bo"),
        Person::outside_window("Late"),
    );
    let other = Person::in_window("Cy");
    h.seed(moon, "4101", &[ann.clone(), bo.clone(), late.clone()])
        .await;
    h.seed(sun, "4102", std::slice::from_ref(&other)).await;
    let web = h.start_web().await;
    h.start_worker("it-incident-worker").await;
    // The scheduler as a process of its own: its /metrics holds the deadline gauge of this
    // database alone, and its check e-mails the admins.
    let metrics_port = free_port();
    let mut env = h.process_env();
    env.extend(
        [
            ("PORT", metrics_port.to_string()),
            ("MOONENGAGE__METRICS__REFRESH_MS", "200".into()),
            (
                "MOONENGAGE__EMAIL__SMTP_URL",
                h.settings.email.smtp_url.clone(),
            ),
            ("MOONENGAGE__EMAIL__ADMINS", "ops@example.com".into()),
            ("MOONENGAGE__EMAIL__DSR_DUE_CHECK_SECS", "1".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let _scheduler = Process::start("scheduler", &env);
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = "moonengage_incident_report_deadline_seconds";
    eventually("no open incident: the gauge is +Inf", secs(30), || async {
        gauge(&metrics, deadline).await == Some(f64::INFINITY)
    })
    .await;

    let admin = Admin {
        web: web.clone(),
        token: h.operator_token().await,
        http: reqwest::Client::new(),
    };
    let (_, document) = admin
        .call(reqwest::Method::GET, "/api/v1/openapi.json", Value::Null)
        .await;
    for path in [
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/notice",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
    // Bad input is refused, naming what is wrong.
    let (status, error) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/incidents",
            json!({"detected_at": Utc::now(), "categories": ["passwords"],
                   "people_affected": 3, "description": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`passwords`"),
        "{error}"
    );

    // Detected 60 hours ago: 12 hours are left to inform the authority.
    let (status, early) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/incidents",
            json!({"detected_at": Utc::now() - Age::hours(60),
                   "categories": ["messenger_ids", "first_names"],
                   "people_affected": 3,
                   "description": "A database backup of Moon Cafe was readable by others for a day."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{early}");
    let early_id = early["id"].as_i64().unwrap();
    assert_eq!(early["status"], "open");
    // Detected now: 72 hours left, far from the warning.
    let (status, fresh) = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/incidents",
            json!({"detected_at": Utc::now(), "categories": ["delivery_records"],
                   "people_affected": 1, "description": "A report was sent to the wrong admin."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    let fresh_id = fresh["id"].as_i64().unwrap();

    let declared = |id: i64| format!("[MoonEngage] Incident #{id} declared");
    let near = |id: i64| format!("[MoonEngage] Incident #{id}: report deadline near");
    eventually(
        "admins are told of both and of the near deadline",
        secs(30),
        || async {
            let subjects = smtp.subjects();
            [declared(early_id), declared(fresh_id), near(early_id)]
                .iter()
                .all(|s| subjects.contains(s))
        },
    )
    .await;
    let left = gauge(&metrics, deadline).await.unwrap();
    assert!(
        (11.0 * 3_600.0..12.0 * 3_600.0).contains(&left),
        "about 12 hours left: {left}"
    );
    // The check runs every second but announces an incident once, and never the fresh one.
    tokio::time::sleep(secs(3)).await;
    assert_eq!(smtp.count(&near(early_id)), 1, "{:?}", smtp.subjects());
    assert_eq!(smtp.count(&near(fresh_id)), 0, "{:?}", smtp.subjects());
    let mail = smtp.output();
    assert!(
        mail.contains("Categories: first_names, messenger_ids"),
        "{mail}"
    );
    for name in ["Ann", "Bo", &ann.psid, &bo.psid] {
        assert!(!mail.contains(name), "`{name}` is in an admin e-mail");
    }

    // Reported: the gauge follows the next open incident; the status never goes back.
    let (status, reported) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/incidents/{early_id}"),
            json!({"status": "reported", "people_affected": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reported}");
    assert!(reported["reported_at"].is_string());
    eventually("the gauge follows the fresh incident", secs(20), || async {
        gauge(&metrics, deadline)
            .await
            .is_some_and(|left| left > 71.0 * 3_600.0 && left <= 72.0 * 3_600.0)
    })
    .await;
    let (status, _) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/incidents/{early_id}"),
            json!({"status": "open"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The admin decides to tell the subscribers of Moon Cafe: those inside their window now,
    // the one outside it with the reply to their next message; nobody of the other Page.
    let (status, decided) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{early_id}/notice"),
            json!({"page_id": moon}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{decided}");
    assert_eq!(
        (decided["owed"].as_i64(), decided["queued"].as_i64()),
        (Some(3), Some(2))
    );
    eventually("people inside their window are told", secs(30), || async {
        incident_notices(&h, "4101", &ann.psid) == 1 && incident_notices(&h, "4101", &bo.psid) == 1
    })
    .await;
    let text = h
        .sandbox
        .messages(&MessageFilter {
            page_id: Some("4101".into()),
            psid: Some(ann.psid.clone()),
        })
        .into_iter()
        .find(|m| m.text.contains("security incident"))
        .unwrap()
        .text;
    assert!(text.contains("readable by others"), "{text}");
    assert!(
        text.contains("your Messenger id for the Page, your first name"),
        "{text}"
    );
    assert_eq!(
        incident_notices(&h, "4101", &late.psid),
        0,
        "outside the window"
    );
    assert_eq!(incident_notices(&h, "4102", &other.psid), 0, "not affected");
    let (status, _) = admin
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{early_id}/notice"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "decided once");

    write_to_page(&h, &web, "4101", &late.psid).await;
    eventually(
        "the late person is told with their reply",
        secs(30),
        || async { incident_notices(&h, "4101", &late.psid) == 1 },
    )
    .await;
    write_to_page(&h, &web, "4101", &ann.psid).await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(incident_notices(&h, "4101", &ann.psid), 1, "told once");

    // The same register from the command line.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(bin_dir().join("moonengage"))
            .args(args)
            .env("DATABASE_URL", &h.db.url)
            .env(
                "MOONENGAGE_CONFIG_DIR",
                crate::helpers::repo_root().join("config"),
            )
            .env("RUST_LOG", "warn")
            .output()
            .expect("the moonengage binary is built");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&[
        "incident",
        "update",
        &fresh_id.to_string(),
        "--status",
        "closed",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "closed"
    );
    let (ok, out, err) = cli(&["incident", "list"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[1]["id"].as_i64(), Some(early_id));
    assert_eq!(listed[1]["notices_told"].as_i64(), Some(3));
    let (ok, _, err) = cli(&[
        "incident",
        "declare",
        "--detected-at",
        "2026-12-01T08:00:00Z",
        "--categories",
        "messenger_ids,secrets",
        "--people",
        "2",
        "--description",
        "x",
    ]);
    assert!(!ok && err.contains("secrets"), "{err}");
    eventually("no open incident left: +Inf", secs(20), || async {
        gauge(&metrics, deadline).await == Some(f64::INFINITY)
    })
    .await;
}
