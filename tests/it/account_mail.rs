//! E-mail to account holders on the real SMTP test server (aiosmtpd as a process): alerts on
//! account changes, with what changed and no secret in them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Harness, OWNER_EMAIL, eventually, free_port};
use crate::notifications::Smtp;

/// A harness whose worker e-mails through a fresh SMTP test server; with web started.
pub(crate) async fn with_smtp() -> (Harness, Smtp, String) {
    let mut h = Harness::new().await;
    let port = free_port();
    let smtp = Smtp::start(port).await;
    h.settings.email.smtp_url = format!("smtp://127.0.0.1:{port}");
    h.settings.email.timeout_ms = 2_000;
    h.settings.web.public_base_url = Some("https://engage.example.com".into());
    let web = h.start_web().await;
    h.start_worker("it-account-mail").await;
    (h, smtp, web)
}

/// Waits until a message with this subject has arrived; returns the whole SMTP output.
pub(crate) async fn wait_for(smtp: &Smtp, subject: &str) -> String {
    eventually(subject, Duration::from_secs(30), || async {
        smtp.subjects().iter().any(|s| s == subject)
    })
    .await;
    smtp.output()
}

/// A JSON call with a bearer token.
pub(crate) async fn call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_api_token_is_told_to_its_owner_by_e_mail_without_the_token() {
    let (h, smtp, web) = with_smtp().await;
    let token = h.owner_token().await;
    let (status, created) = call(
        reqwest::Method::POST,
        &format!("{web}/api/v1/tokens"),
        &token,
        Some(json!({"name": "deploy script", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let output = wait_for(&smtp, "[MoonEngage] A new API token for your account").await;
    assert!(output.contains(&format!("To: {OWNER_EMAIL}")), "{output}");
    assert!(output.contains("\"deploy script\""), "{output}");
    assert!(output.contains("Role: viewer"), "{output}");
    assert!(output.contains("If this was not you"), "{output}");
    let secret = created["token"].as_str().unwrap();
    assert!(
        !output.contains(secret),
        "the token itself is never e-mailed"
    );
    let payloads: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM jobs WHERE kind = 'account_alert'")
            .fetch_all(h.pool())
            .await
            .unwrap();
    assert!(payloads.iter().all(|p| !p.contains('@')), "{payloads:?}");
}
