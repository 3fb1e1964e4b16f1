//! End-to-end tests: a sandbox on a free port, spoken to over real HTTP.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

struct TestSandbox {
    base: String,
    state: SandboxState,
    client: reqwest::Client,
}

async fn spawn() -> TestSandbox {
    spawn_with(SandboxSettings::default()).await
}

async fn spawn_with(settings: SandboxSettings) -> TestSandbox {
    let sandbox = Sandbox::build(settings).await.expect("sandbox binds");
    let test = TestSandbox {
        base: sandbox.base_url(),
        state: sandbox.state(),
        client: reqwest::Client::new(),
    };
    tokio::spawn(sandbox.run_until_stopped());
    test
}

struct Answer {
    status: StatusCode,
    usage: Option<Value>,
    body: Value,
}

impl TestSandbox {
    async fn post_raw(&self, path: &str, body: String) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request succeeds")
    }

    async fn send_to(&self, node: &str, token: &str, body: &Value) -> Answer {
        let path = format!("/v21.0/{node}/messages?access_token={token}");
        let response = self.post_raw(&path, body.to_string()).await;
        let status = response.status();
        let usage = response
            .headers()
            .get("x-business-use-case-usage")
            .map(|v| serde_json::from_str(v.to_str().unwrap()).unwrap());
        let body = response.json().await.expect("JSON answer");
        Answer {
            status,
            usage,
            body,
        }
    }

    async fn send(&self, body: &Value) -> Answer {
        self.send_to("me", "sandbox-token-100", body).await
    }

    async fn control(&self, path: &str, body: Value) {
        let response = self
            .post_raw(&format!("/_sandbox/{path}"), body.to_string())
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    fn all_messages(&self) -> Vec<ReceivedMessage> {
        self.state.messages(&MessageFilter::default())
    }
}

fn text_to(psid: &str, text: &str) -> Value {
    json!({"recipient": {"id": psid}, "messaging_type": "UPDATE", "message": {"text": text}})
}

/// Asserts the Graph API error shape exactly: the keys, their types and the code/subcode.
fn assert_graph_error(answer: &Answer, status: StatusCode, code: u64, subcode: Option<u64>) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let object = answer.body.as_object().expect("object");
    assert_eq!(object.len(), 1, "{}", answer.body);
    let error = answer.body["error"].as_object().expect("error object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec!["code", "fbtrace_id", "is_transient", "message", "type"];
    if subcode.is_some() {
        expected.push("error_subcode");
        expected.sort_unstable();
    }
    assert_eq!(keys, expected, "{}", answer.body);
    assert_eq!(error["type"], "OAuthException");
    assert_eq!(error["code"].as_u64(), Some(code));
    assert_eq!(error.get("error_subcode").and_then(Value::as_u64), subcode);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["fbtrace_id"].as_str().is_some_and(|t| t.len() > 5));
    assert!(error["is_transient"].is_boolean());
}

#[tokio::test]
async fn a_send_is_recorded_with_text_and_quick_replies() {
    let sandbox = spawn().await;
    let body = json!({
        "recipient": {"id": "psid-1"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Full moon tonight 🌕", "quick_replies": [
            {"content_type": "text", "title": "Remind me", "payload": "REMIND"},
            {"content_type": "text", "title": "Stop", "payload": "STOP"}
        ]}
    });

    let answer = sandbox.send(&body).await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["recipient_id"], "psid-1");
    let message_id = answer.body["message_id"].as_str().unwrap().to_owned();
    assert!(message_id.starts_with("m_"));
    let usage = answer.usage.expect("usage header");
    assert_eq!(usage["100"][0]["type"], "messenger");
    assert_eq!(usage["100"][0]["estimated_time_to_regain_access"], 0);
    let recorded = sandbox.all_messages();
    assert_eq!(recorded.len(), 1);
    let message = &recorded[0];
    assert_eq!(
        (message.page_id.as_str(), message.psid.as_str()),
        ("100", "psid-1")
    );
    assert_eq!(message.text, "Full moon tonight 🌕");
    assert_eq!(message.messaging_type, "RESPONSE");
    assert_eq!(message.message_id, message_id);
    assert!(message.received_at_ms > 1_600_000_000_000);
    let replies: Vec<(&str, &str)> = message
        .quick_replies
        .iter()
        .map(|q| (q.title.as_str(), q.payload.as_str()))
        .collect();
    assert_eq!(replies, [("Remind me", "REMIND"), ("Stop", "STOP")]);

    let second = sandbox.send(&body).await;
    assert_ne!(
        second.body["message_id"].as_str(),
        Some(message_id.as_str())
    );
}

#[tokio::test]
async fn an_unknown_or_missing_token_gives_190() {
    let sandbox = spawn().await;
    let body = text_to("psid-1", "hi");

    let unknown = sandbox.send_to("me", "not-a-token", &body).await;
    assert_graph_error(&unknown, StatusCode::BAD_REQUEST, 190, None);
    assert_eq!(unknown.body["error"]["is_transient"], false);

    let response = sandbox
        .post_raw("/v21.0/me/messages", body.to_string())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let missing: Value = response.json().await.unwrap();
    assert_eq!(missing["error"]["code"], 190);

    assert!(sandbox.all_messages().is_empty());
}

#[tokio::test]
async fn a_registered_token_sends_as_its_page_and_only_that_page() {
    let sandbox = spawn().await;
    sandbox
        .control(
            "pages",
            json!({"page_id": "777", "access_token": "EAAB-secret", "name": "Moon Club"}),
        )
        .await;
    let body = text_to("psid-1", "hi");

    let ok = sandbox.send_to("777", "EAAB-secret", &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.usage.unwrap().get("777").is_some());
    let wrong_page = sandbox.send_to("778", "EAAB-secret", &body).await;
    assert_graph_error(&wrong_page, StatusCode::BAD_REQUEST, 100, None);

    let pages = sandbox.all_messages();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].page_id, "777");
    let me = sandbox.get_json("/v21.0/me?access_token=EAAB-secret").await;
    assert_eq!(me, json!({"id": "777", "name": "Moon Club"}));
}

#[tokio::test]
async fn the_rate_limit_gives_613_above_the_configured_rate() {
    let sandbox = spawn().await;
    sandbox
        .control("rate-limit", json!({"per_second": 5}))
        .await;
    let sandbox = std::sync::Arc::new(sandbox);

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let sandbox = sandbox.clone();
        calls.spawn(async move { sandbox.send(&text_to(&format!("p{i}"), "hi")).await });
    }
    let answers = calls.join_all().await;

    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(accepted, 5);
    let limited: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != StatusCode::OK)
        .collect();
    assert_eq!(limited.len(), 3);
    for answer in limited {
        assert_graph_error(answer, StatusCode::BAD_REQUEST, 613, None);
        assert_eq!(answer.body["error"]["is_transient"], true);
        assert_eq!(
            answer.body["error"]["message"],
            "(#613) Calls to this api have exceeded the rate limit."
        );
        let usage = answer.usage.as_ref().expect("usage header on 613");
        assert_eq!(usage["100"][0]["call_count"], 100);
    }
    let stats = sandbox.state.stats();
    assert_eq!(stats.received_total, 5);
    assert_eq!(stats.by_page["100"].rejected["613"], 3);
    assert_eq!(stats.by_page["100"].max_per_second, 5);
}

#[tokio::test]
async fn the_usage_header_reports_the_share_of_the_budget_used() {
    let sandbox = spawn_with(SandboxSettings {
        rate_limit_per_page: 4,
        ..SandboxSettings::default()
    })
    .await;
    let first = sandbox.send(&text_to("a", "1")).await;
    let second = sandbox.send(&text_to("a", "2")).await;
    assert_eq!(first.usage.unwrap()["100"][0]["call_count"], 25);
    assert_eq!(second.usage.unwrap()["100"][0]["total_time"], 50);
}

#[tokio::test]
async fn a_closed_window_gives_10_2018278_and_nothing_is_recorded() {
    let sandbox = spawn().await;
    sandbox
        .control("closed-window", json!({"psids": ["gone"]}))
        .await;

    let closed = sandbox.send(&text_to("gone", "hi")).await;
    let open = sandbox.send(&text_to("here", "hi")).await;

    assert_graph_error(&closed, StatusCode::BAD_REQUEST, 10, Some(2_018_278));
    assert_eq!(open.status, StatusCode::OK);
    let recorded: Vec<String> = sandbox.all_messages().into_iter().map(|m| m.psid).collect();
    assert_eq!(recorded, ["here"]);
    assert_eq!(sandbox.state.stats().by_page["100"].rejected["10"], 1);
}

#[tokio::test]
async fn validation_refuses_what_facebook_refuses() {
    let sandbox = spawn().await;
    let reply = |title: &str| json!({"content_type": "text", "title": title, "payload": "P"});
    let with_replies = |replies: Vec<Value>| {
        json!({"recipient": {"id": "a"}, "messaging_type": "UPDATE",
               "message": {"text": "hi", "quick_replies": replies}})
    };
    let longest_text = "x".repeat(2000);
    let accepted = [
        text_to("a", &longest_text),
        with_replies(vec![reply("12345678901234567890"); 13]),
        json!({"recipient": {"id": "a"}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
               "message": {"text": "hi"}}),
    ];
    for body in &accepted {
        let answer = sandbox.send(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }

    let refused = [
        text_to("a", &"x".repeat(2001)),
        with_replies(vec![reply("ok"); 14]),
        with_replies(vec![reply("123456789012345678901")]),
        json!({"recipient": {"id": "a"}, "message": {"text": "no messaging_type"}}),
        json!({"recipient": {"id": "a"}, "messaging_type": "MESSAGE_TAG",
               "tag": "ACCOUNT_UPDATE", "message": {"text": "retired tag"}}),
        json!({"messaging_type": "UPDATE", "message": {"text": "no recipient"}}),
    ];
    for body in &refused {
        let answer = sandbox.send(body).await;
        assert_graph_error(&answer, StatusCode::BAD_REQUEST, 100, None);
    }
    let malformed = sandbox
        .post_raw(
            "/v21.0/me/messages?access_token=sandbox-token-100",
            "{not json".into(),
        )
        .await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let malformed: Value = malformed.json().await.unwrap();
    assert_eq!(malformed["error"]["code"], 100);

    assert_eq!(sandbox.all_messages().len(), accepted.len());
    assert_eq!(
        sandbox.state.stats().by_page["100"].rejected["100"],
        refused.len() as u64 + 1
    );
}

#[tokio::test]
async fn a_first_attempt_only_fault_lets_the_retry_through() {
    let sandbox = spawn().await;
    sandbox
        .control(
            "faults",
            json!({"random": [{"code": 1200, "subcode": null, "rate": 1.0, "first_attempt_only": true}]}),
        )
        .await;

    let first = sandbox.send(&text_to("a", "hello")).await;
    let retry = sandbox.send(&text_to("a", "hello")).await;
    let other_text = sandbox.send(&text_to("a", "other")).await;

    assert_graph_error(&first, StatusCode::INTERNAL_SERVER_ERROR, 1200, None);
    assert_eq!(first.body["error"]["is_transient"], true);
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_graph_error(&other_text, StatusCode::INTERNAL_SERVER_ERROR, 1200, None);
    let texts: Vec<String> = sandbox.all_messages().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["hello"]);
    assert_eq!(sandbox.state.stats().by_page["100"].rejected["1200"], 2);
}

#[tokio::test]
async fn a_random_fault_without_first_attempt_only_hits_every_eligible_call() {
    let sandbox = spawn().await;
    sandbox.state.set_faults(Faults {
        random: vec![RandomFault {
            error: ErrorSpec::new(2),
            rate: 1.0,
            first_attempt_only: false,
        }],
        ..Faults::default()
    });
    for _ in 0..3 {
        let answer = sandbox.send(&text_to("a", "hello")).await;
        assert_graph_error(&answer, StatusCode::INTERNAL_SERVER_ERROR, 2, None);
    }
    assert!(sandbox.all_messages().is_empty());
}

#[tokio::test]
async fn psid_and_page_faults_answer_their_error() {
    let sandbox = spawn().await;
    sandbox
        .control(
            "faults",
            json!({
                "by_psid": {"away": {"code": 551, "is_transient": true}},
                "by_page": {"200": {"code": 190, "subcode": 463}}
            }),
        )
        .await;

    let away = sandbox.send(&text_to("away", "hi")).await;
    let halted = sandbox
        .send_to("me", "sandbox-token-200", &text_to("a", "hi"))
        .await;
    let fine = sandbox.send(&text_to("a", "hi")).await;

    assert_graph_error(&away, StatusCode::BAD_REQUEST, 551, None);
    assert_eq!(away.body["error"]["is_transient"], true);
    assert_graph_error(&halted, StatusCode::BAD_REQUEST, 190, Some(463));
    assert_eq!(fine.status, StatusCode::OK);
    assert_eq!(sandbox.all_messages().len(), 1);
}

#[tokio::test]
async fn injected_503s_are_plain_text_and_not_recorded() {
    let sandbox = spawn().await;
    sandbox
        .control("faults", json!({"http_503_rate": 1.0}))
        .await;

    let response = sandbox
        .post_raw(
            "/v21.0/me/messages?access_token=sandbox-token-100",
            text_to("a", "hi").to_string(),
        )
        .await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert!(sandbox.all_messages().is_empty());
    assert_eq!(sandbox.state.stats().by_page["100"].rejected["http_503"], 1);
}

#[tokio::test]
async fn timeout_mode_records_the_message_then_hangs() {
    let sandbox = spawn().await;
    sandbox
        .control(
            "faults",
            json!({"by_psid": {"slow": {"mode": "timeout", "hang_ms": 600}}}),
        )
        .await;
    let url = format!(
        "{}/v21.0/me/messages?access_token=sandbox-token-100",
        sandbox.base
    );

    let impatient = sandbox
        .client
        .post(&url)
        .json(&text_to("slow", "first"))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    let recorded: Vec<String> = sandbox.all_messages().into_iter().map(|m| m.text).collect();
    assert_eq!(recorded, ["first"]);

    let started = Instant::now();
    let patient = sandbox
        .client
        .post(&url)
        .json(&text_to("slow", "second"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(patient.status(), StatusCode::OK);
    assert_eq!(sandbox.all_messages().len(), 2);
}

#[tokio::test]
async fn latency_delays_send_and_profile_answers() {
    let sandbox = spawn().await;
    sandbox.control("latency", json!({"ms": 250})).await;

    let started = Instant::now();
    let answer = sandbox.send(&text_to("a", "hi")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(250));

    let started = Instant::now();
    sandbox
        .get_json("/v21.0/a?fields=first_name&access_token=sandbox-token-100")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(250));

    sandbox.state.set_latency(Duration::ZERO);
    let started = Instant::now();
    sandbox.send(&text_to("a", "hi")).await;
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn profiles_answer_registered_or_stable_made_up_names() {
    let sandbox = spawn().await;
    sandbox
        .control("profiles", json!({"psid": "known", "first_name": "Selene"}))
        .await;
    let lookup =
        |psid: &str| format!("/v21.0/{psid}?fields=first_name&access_token=sandbox-token-1");

    let known = sandbox.get_json(&lookup("known")).await;
    assert_eq!(known, json!({"first_name": "Selene", "id": "known"}));
    let stranger = sandbox.get_json(&lookup("stranger")).await;
    assert_eq!(stranger["id"], "stranger");
    let name = stranger["first_name"].as_str().unwrap();
    assert!(!name.is_empty());
    assert_eq!(
        sandbox.get_json(&lookup("stranger")).await["first_name"],
        name
    );

    let refused = sandbox
        .client
        .get(format!("{}/v21.0/known?fields=first_name", sandbox.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], 190);
}

#[tokio::test]
async fn stats_count_requests_duplicates_and_outcomes() {
    let sandbox = spawn().await;
    sandbox
        .control("closed-window", json!({"psids": ["gone"]}))
        .await;
    for (psid, text) in [("a", "x"), ("a", "x"), ("a", "x"), ("b", "x"), ("a", "y")] {
        sandbox.send(&text_to(psid, text)).await;
    }
    sandbox.send(&text_to("gone", "x")).await;
    sandbox
        .send_to("me", "sandbox-token-200", &text_to("a", "x"))
        .await;
    sandbox.send_to("me", "bad", &text_to("a", "x")).await;

    let stats = sandbox.get_json("/_sandbox/stats").await;

    assert_eq!(
        stats,
        json!({
            "received_total": 6,
            "by_page": {
                "100": {"received": 5, "rejected": {"10": 1}, "max_per_second": 5},
                "200": {"received": 1, "rejected": {}, "max_per_second": 1}
            },
            "duplicates": 1,
            "requests_total": 8
        })
    );
}

#[tokio::test]
async fn the_messages_endpoint_filters_by_page_and_psid() {
    let sandbox = spawn().await;
    sandbox.send(&text_to("a", "1")).await;
    sandbox.send(&text_to("b", "2")).await;
    sandbox
        .send_to("me", "sandbox-token-200", &text_to("a", "3"))
        .await;

    let texts = |messages: Value| -> Vec<String> {
        messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        texts(sandbox.get_json("/_sandbox/messages").await),
        ["1", "2", "3"]
    );
    assert_eq!(
        texts(sandbox.get_json("/_sandbox/messages?psid=a").await),
        ["1", "3"]
    );
    assert_eq!(
        texts(
            sandbox
                .get_json("/_sandbox/messages?page_id=100&psid=a")
                .await
        ),
        ["1"]
    );
    let one = sandbox.get_json("/_sandbox/messages?page_id=200").await;
    let mut keys: Vec<&String> = one[0].as_object().unwrap().keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "message_id",
            "messaging_type",
            "page_id",
            "psid",
            "quick_replies",
            "received_at_ms",
            "tag",
            "text"
        ]
    );
}

#[tokio::test]
async fn reset_clears_records_and_faults() {
    let sandbox = spawn().await;
    sandbox.send(&text_to("a", "1")).await;
    sandbox
        .control("faults", json!({"http_503_rate": 1.0}))
        .await;

    sandbox.control("reset", json!({})).await;

    assert_eq!(sandbox.get_json("/_sandbox/messages").await, json!([]));
    let after = sandbox.send(&text_to("a", "2")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(sandbox.state.stats().requests_total, 1);
}

#[tokio::test]
async fn a_path_without_a_graph_version_is_refused() {
    let sandbox = spawn().await;
    let response = sandbox
        .post_raw(
            "/21.0/me/messages?access_token=sandbox-token-100",
            text_to("a", "hi").to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 2500);
    assert!(sandbox.all_messages().is_empty());
}
