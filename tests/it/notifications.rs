//! Notifications: admin e-mails through a real SMTP server (Python's aiosmtpd, as a process),
//! retried while it is down; privacy-policy updates told to every person once, through the
//! sandbox's Messenger — at once inside their window, otherwise with the reply to their next
//! message.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_sandbox::{ErrorSpec, Faults, MessageFilter, PsidFault, ReceivedMessage};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{Harness, Person, eventually, moonengage, random_psid};
use crate::webhook_client::{message, signature};

/// An SMTP server that prints every message it accepts (aiosmtpd's debugging handler); the
/// test reads the subjects from its output.
pub(crate) struct Smtp {
    port: u16,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Smtp {
    pub(crate) async fn start(port: u16) -> Smtp {
        let mut smtp = Smtp {
            port,
            child: None,
            lines: Arc::default(),
        };
        smtp.restart().await;
        smtp
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    async fn restart(&mut self) {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (scripts/test installs aiosmtpd)");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = self.lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        eventually("the SMTP server accepts connections", secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
        })
        .await;
    }

    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("stop the SMTP server");
    }

    /// The subject of every message received so far, in order.
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.strip_prefix("Subject: ").map(str::to_owned))
            .collect()
    }

    pub(crate) fn count(&self, subject: &str) -> usize {
        self.subjects().iter().filter(|s| *s == subject).count()
    }

    /// The whole output: every message, headers and body.
    pub(crate) fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn scalar(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(h.pool())
        .await
        .unwrap()
}

async fn file_request(h: &Harness, page_id: i64) -> i64 {
    let mut conn = h.pool().acquire().await.unwrap();
    let subject = Subject {
        page_id,
        subscriber_id: None,
        psid: Some(random_psid()),
    };
    dsr::file(
        &mut conn,
        &h.keyring,
        DsrType::Export,
        Channel::Admin,
        &subject,
        h.settings.queue.max_attempts,
    )
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_emails_arrive_with_their_subjects_and_wait_out_an_smtp_outage() {
    let mut h = Harness::new().await;
    let port = free_port();
    let mut smtp = Smtp::start(port).await;
    h.settings.email.smtp_url = format!("smtp://127.0.0.1:{port}");
    h.settings.email.admins = vec!["ops@example.com".into()];
    h.settings.email.timeout_ms = 2_000;
    h.settings.email.dsr_due_check_secs = 1;

    // A Page whose token Facebook refuses, one whose campaign reaches everybody and one whose
    // only recipient cannot be reached.
    let (halted, fine, failing) = (
        h.add_page("3001").await,
        h.add_page("3002").await,
        h.add_page("3003").await,
    );
    let unreachable = Person::in_window("Una");
    h.seed(halted, "3001", &[Person::in_window("Ann")]).await;
    h.seed(
        fine,
        "3002",
        &[
            Person::in_window("Bo"),
            Person::in_window("Cy"),
            Person::in_window("Di"),
        ],
    )
    .await;
    h.seed(failing, "3003", std::slice::from_ref(&unreachable))
        .await;
    h.sandbox.set_faults(Faults {
        by_page: HashMap::from([("3001".into(), ErrorSpec::new(190).with_subcode(460))]),
        by_psid: HashMap::from([(
            unreachable.psid.clone(),
            PsidFault::Error(ErrorSpec::new(551)),
        )]),
        ..Faults::default()
    });
    let halted_campaign = h
        .campaign(halted, "Hi {{first_name default=\"there\"}}")
        .await;
    let completed = h
        .campaign(fine, "Hi {{first_name default=\"there\"}}")
        .await;
    let failed = h
        .campaign(failing, "Hi {{first_name default=\"there\"}}")
        .await;
    let received = file_request(&h, fine).await;
    let due_soon: i64 = sqlx::query_scalar(
        "INSERT INTO dsr_requests (type, channel, due_at, confirmation_code)
         VALUES ('erasure', 'admin', now() + interval '2 days', 'DUESOONIT0000001') RETURNING id",
    )
    .fetch_one(h.pool())
    .await
    .unwrap();
    h.start_scheduler().await;
    h.start_worker("it-email-worker").await;

    let expected = [
        format!("[MoonEngage] Page #{halted} halted"),
        format!("[MoonEngage] Campaign #{completed} completed"),
        format!("[MoonEngage] Campaign #{failed} failed"),
        format!("[MoonEngage] Data-subject request #{received} received"),
        format!("[MoonEngage] Data-subject request #{due_soon} is due soon"),
    ];
    eventually("every admin e-mail arrives", secs(30), || async {
        let subjects = smtp.subjects();
        expected.iter().all(|e| subjects.contains(e))
    })
    .await;
    let output = smtp.output();
    assert!(
        output.contains(&format!("campaign #{halted_campaign}")),
        "the halt e-mail lists the paused campaign:\n{output}"
    );
    assert!(output.contains("Sent: 3"), "counts are reported:\n{output}");
    for person in [&unreachable.psid, "Una", "Bo", "Ann"] {
        assert!(!output.contains(person), "`{person}` is in an admin e-mail");
    }
    // The due-soon check runs every second but announces a request once.
    tokio::time::sleep(secs(3)).await;
    for subject in &expected {
        assert_eq!(smtp.count(subject), 1, "{subject}: {:?}", smtp.subjects());
    }

    // While the SMTP server is down an e-mail is retried (its run time moves, its attempts grow)
    // and kept; once the server is back on the same port, it arrives.
    smtp.stop().await;
    let during_outage = file_request(&h, fine).await;
    let key = format!("dsr_received:{during_outage}");
    let attempts = |h: &Harness| {
        let key = key.clone();
        let pool = h.pool().clone();
        async move {
            // A job that succeeded is deleted: no row is `done`.
            let row: Option<(i32, String)> = sqlx::query_as(
                "SELECT attempts, status FROM jobs WHERE kind = 'email' AND key = $1",
            )
            .bind(key)
            .fetch_optional(&pool)
            .await
            .unwrap();
            row.unwrap_or((0, "done".into()))
        }
    };
    eventually("the e-mail is retried", secs(30), || async {
        attempts(&h).await.0 >= 2
    })
    .await;
    let (first, _) = attempts(&h).await;
    eventually("it keeps being retried", secs(30), || async {
        attempts(&h).await.0 > first
    })
    .await;
    let (_, status) = attempts(&h).await;
    assert_ne!(status, "done");
    assert_ne!(status, "failed");
    let subject = format!("[MoonEngage] Data-subject request #{during_outage} received");
    assert_eq!(smtp.count(&subject), 0);

    smtp.restart().await;
    eventually("the retried e-mail arrives", secs(30), || async {
        smtp.count(&subject) == 1
    })
    .await;
    eventually("the job is done", secs(10), || async {
        attempts(&h).await.1 == "done"
    })
    .await;
}

/// A person writes to the Page: a signed webhook to the web process, processed by a worker.
pub(crate) async fn write_to_page(h: &Harness, web: &str, page: &str, psid: &str) {
    let mid = format!("m_{:016x}", rand::random::<u64>());
    let body = serde_json::to_vec(&message(page, psid, &mid, "hello again")).unwrap();
    let secret = h.settings.messenger.app_secret.expose_secret().to_owned();
    let response = reqwest::Client::new()
        .post(format!("{web}/webhooks/messenger"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature(&secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the message is processed", secs(20), || async {
        scalar(
            h,
            "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL",
        )
        .await
            == 0
    })
    .await;
}

fn notices(h: &Harness, psid: &str) -> Vec<ReceivedMessage> {
    h.sandbox
        .messages(&MessageFilter {
            page_id: Some("3101".into()),
            psid: Some(psid.to_owned()),
        })
        .into_iter()
        .filter(|m| m.text.contains("updated its privacy policy"))
        .collect()
}

/// Waits until no policy notice is queued or running.
async fn policy_queue_idle(h: &Harness) {
    eventually("the policy queue is idle", secs(20), || async {
        scalar(
            h,
            "SELECT count(*) FROM jobs WHERE kind = 'policy' AND status <> 'failed'",
        )
        .await
            == 0
    })
    .await;
}

async fn told(h: &Harness, psid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT policy_version_notified FROM subscribers WHERE psid_index = $1")
        .bind(h.keyring.blind_index("3101", psid))
        .fetch_one(h.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_update_reaches_people_in_their_window_at_once_and_the_others_with_their_next_reply()
 {
    let mut h = Harness::new().await;
    let page = h.add_page("3101").await;
    let (inside, quitter, away) = (
        Person::in_window("Ina"),
        Person::in_window("Quinn"),
        Person::outside_window("Al"),
    );
    h.seed(
        page,
        "3101",
        &[inside.clone(), quitter.clone(), away.clone()],
    )
    .await;
    // Unsubscribed people still hear about how their data is used.
    sqlx::query("UPDATE subscribers SET status = 'unsubscribed' WHERE psid_index = $1")
        .bind(h.keyring.blind_index("3101", &quitter.psid))
        .execute(h.pool())
        .await
        .unwrap();
    h.start_worker("it-policy-worker").await;
    let web = h.start_web().await;
    let token = h.operator_token().await;
    let publish = || async {
        reqwest::Client::new()
            .post(format!("{web}/api/v1/policy-versions"))
            .bearer_auth(&token)
            .json(&json!({
                "version": "2026-12",
                "summary": "Delivery records are now kept for 30 days.",
                "url": "https://example.com/privacy/2026-12"
            }))
            .send()
            .await
            .unwrap()
    };

    let first = publish().await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["queued"], 2, "{first}");
    let version = first["id"].as_i64().unwrap();
    eventually("in-window people are told at once", secs(20), || async {
        notices(&h, &inside.psid).len() == 1 && notices(&h, &quitter.psid).len() == 1
    })
    .await;
    policy_queue_idle(&h).await;
    let notice = &notices(&h, &inside.psid)[0];
    assert_eq!(notice.messaging_type, "RESPONSE");
    assert!(notice.text.contains("version 2026-12"), "{}", notice.text);
    assert!(notice.text.contains("https://example.com/privacy/2026-12"));
    assert!(notices(&h, &away.psid).is_empty());
    assert_eq!(told(&h, &inside.psid).await, Some(version));
    assert_eq!(told(&h, &quitter.psid).await, Some(version));
    assert_eq!(told(&h, &away.psid).await, None);

    let again = publish().await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["created"].clone(), again["queued"].clone()),
        (json!(false), json!(0))
    );
    policy_queue_idle(&h).await;
    assert_eq!(
        notices(&h, &inside.psid).len(),
        1,
        "publishing again tells nobody again"
    );
    assert_eq!(notices(&h, &quitter.psid).len(), 1);

    // The person outside their window is told with the reply to their next message, once.
    write_to_page(&h, &web, "3101", &away.psid).await;
    eventually("the returning person is told", secs(20), || async {
        notices(&h, &away.psid).len() == 1
    })
    .await;
    assert_eq!(told(&h, &away.psid).await, Some(version));
    write_to_page(&h, &web, "3101", &away.psid).await;
    write_to_page(&h, &web, "3101", &inside.psid).await;
    policy_queue_idle(&h).await;
    for person in [&inside, &quitter, &away] {
        assert_eq!(notices(&h, &person.psid).len(), 1, "{}", person.first_name);
    }

    // A later version, published with the CLI, reaches everyone now inside their window.
    let output = moonengage(
        &h,
        &[
            "policy",
            "publish",
            "--version",
            "2027-01",
            "--summary",
            "Exports now expire after 7 days.",
            "--url",
            "https://example.com/privacy/2027-01",
        ],
    )
    .await;
    let published: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(published["queued"], 3, "{published}");
    eventually("everyone hears of the new version", secs(20), || async {
        [&inside, &quitter, &away]
            .iter()
            .all(|p| notices(&h, &p.psid).len() == 2)
    })
    .await;
    policy_queue_idle(&h).await;
    let newer = published["id"].as_i64().unwrap();
    for person in [&inside, &quitter, &away] {
        assert_eq!(told(&h, &person.psid).await, Some(newer));
    }
}
