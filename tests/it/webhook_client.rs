//! What tests use to talk to the web process like Facebook does: Meta-shaped webhook payloads
//! signed independently of the server, a client that never keeps cookies, and polling counts.

use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::Harness;

/// Where Facebook posts webhooks.
pub const WEBHOOK: &str = "/webhooks/messenger";

/// `sha256=<hex>` of the body under `secret`, as Facebook signs a webhook.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Meta-shaped delivery of one text message from `psid` to `page`.
pub fn message(page: &str, psid: &str, mid: &str, text: &str) -> Value {
    let now = Utc::now().timestamp_millis();
    json!({
        "object": "page",
        "entry": [{
            "id": page,
            "time": now,
            "messaging": [{
                "sender": {"id": psid},
                "recipient": {"id": page},
                "timestamp": now,
                "message": {"mid": mid, "text": text}
            }]
        }]
    })
}

/// Fails the test when a response sets a cookie: no public route may.
pub fn assert_no_cookie(response: &reqwest::Response) {
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{} answered with Set-Cookie",
        response.url()
    );
}

/// The web process of a harness and a client that never keeps cookies.
#[derive(Clone)]
pub struct WebClient {
    /// Base URL of the web process.
    pub url: String,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The app secret that signs webhooks and Facebook's other signed requests.
    pub secret: String,
}

impl WebClient {
    /// Starts the harness's web process in-process.
    pub async fn start(h: &mut Harness) -> WebClient {
        WebClient {
            url: h.start_web().await,
            http: reqwest::Client::new(),
            secret: h.settings.messenger.app_secret.expose_secret().to_owned(),
        }
    }

    /// Posts raw bytes to the webhook with the given signature header (none when `None`).
    pub async fn post_raw(&self, body: Vec<u8>, signature: Option<String>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{WEBHOOK}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        assert_no_cookie(&response);
        response
    }

    /// Posts a correctly signed delivery.
    pub async fn deliver(&self, payload: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = signature(&self.secret, &body);
        self.post_raw(body, Some(signature)).await
    }

    /// Delivers one signed text message and expects it accepted.
    pub async fn send_text(&self, page: &str, psid: &str, mid: &str, text: &str) {
        let response = self.deliver(&message(page, psid, mid, text)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// Runs a `SELECT count(*) …` on the test database.
pub async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(h.pool())
        .await
        .unwrap()
}

/// Polls `sql` (a count) until it reaches `expected`, failing the test after `within`.
pub async fn wait_count(h: &Harness, sql: &str, expected: i64, within: Duration) {
    let started = Instant::now();
    loop {
        let now = count(h, sql).await;
        if now == expected {
            return;
        }
        assert!(
            started.elapsed() < within,
            "`{sql}` is {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
