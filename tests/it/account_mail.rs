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
    h.settings.accounts.maintenance_check_secs = 1;
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

/// The last link of this kind in the SMTP output (quoted-printable soft breaks undone).
pub(crate) fn last_link(output: &str, path: &str) -> String {
    let text = output.replace("=\n", "");
    let start = text.rfind(path).expect("a link in the e-mail");
    let rest = &text[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].to_owned()
}

async fn form_post(url: &str, password: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(url)
        .form(&[("password", password)])
        .send()
        .await
        .expect("the page answers");
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_link_is_e_mailed_accepted_once_and_makes_a_member() {
    let (h, smtp, web) = with_smtp().await;
    let owner = h.owner_token().await;
    let api = |path: &str| format!("{web}/api/v1{path}");
    let (status, body) = call(
        reqwest::Method::POST,
        &api("/invitations"),
        &owner,
        Some(json!({"email": "New.Member@IT.example", "role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let output = wait_for(&smtp, "[MoonEngage] Join workspace \"it\"").await;
    assert!(output.contains("To: new.member@it.example"), "{output}");
    let path = last_link(&output, "/console/invitations/");
    assert!(path.starts_with("/console/invitations/mi_"), "{path}");
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM invitations")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(stored.is_some(), "only the link's hash is kept");
    let jobs: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM jobs")
        .fetch_all(h.pool())
        .await
        .unwrap();
    assert!(jobs.iter().all(|p| !p.contains("mi_")), "{jobs:?}");

    let page = reqwest::get(format!("{web}{path}")).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Choose a password") && !html.contains("<script"),
        "{html}"
    );

    let (status, html) = form_post(&format!("{web}{path}"), "short").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("at least 12 characters"), "{html}");
    let (status, html) = form_post(&format!("{web}{path}"), "correct horse battery staple").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, html) = form_post(&format!("{web}{path}"), "correct horse battery staple").await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("was used"), "{html}");

    let (_, members) = call(reqwest::Method::GET, &api("/members"), &owner, None).await;
    let new = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "new.member@it.example")
        .expect("the new member is listed");
    assert_eq!(new["role"], "admin");
    let output = wait_for(&smtp, "[MoonEngage] A new member in workspace \"it\"").await;
    assert!(
        output.contains("new.member@it.example joined as admin"),
        "{output}"
    );

    // An expired link says so.
    let (status, _) = call(
        reqwest::Method::POST,
        &api("/invitations"),
        &owner,
        Some(json!({"email": "late@it.example", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    eventually(
        "the second invitation is e-mailed",
        Duration::from_secs(30),
        || async { smtp.output().contains("To: late@it.example") },
    )
    .await;
    let late = last_link(&smtp.output(), "/console/invitations/");
    sqlx::query("UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE email = 'late@it.example'")
        .execute(h.pool())
        .await
        .unwrap();
    let page = reqwest::get(format!("{web}{late}")).await.unwrap();
    assert_eq!(page.status(), StatusCode::GONE);
    assert!(page.text().await.unwrap().contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bound_who_invites_and_changes_whom_and_the_last_owner_stays() {
    let mut h = Harness::new().await;
    let web = h.start_web().await;
    let api = |path: &str| format!("{web}/api/v1{path}");
    let owner = h.owner_token().await;
    let admin = h.token(moonengage_accounts::Role::Admin).await;
    let viewer = h.token(moonengage_accounts::Role::Viewer).await;
    let invite = |role: &str| Some(json!({"email": "x@it.example", "role": role}));
    let post = reqwest::Method::POST;
    let (s, _) = call(
        post.clone(),
        &api("/invitations"),
        &viewer,
        invite("viewer"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(post.clone(), &api("/invitations"), &admin, invite("owner")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = call(
        post.clone(),
        &api("/invitations"),
        &owner,
        Some(json!({"email": "nope", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = call(
        post,
        &api("/invitations"),
        &owner,
        Some(json!({"email": OWNER_EMAIL, "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");

    let owner_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(OWNER_EMAIL)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let member = api(&format!("/members/{owner_id}"));
    let (s, _) = call(
        reqwest::Method::PUT,
        &member,
        &admin,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only owners unmake owners");
    let (s, body) = call(
        reqwest::Method::PUT,
        &member,
        &owner,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last owner")
    );
    let (s, _) = call(reqwest::Method::DELETE, &member, &owner, None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A user of another workspace is not found here.
    let other = moonengage_accounts::workspaces::create(h.pool(), "other", "them@other.example")
        .await
        .unwrap();
    let theirs = api(&format!("/members/{}", other.owner_id));
    let (s, _) = call(
        reqwest::Method::PUT,
        &theirs,
        &owner,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(reqwest::Method::DELETE, &theirs, &owner, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With a second owner, the first may step down; the change is recorded and alerted.
    sqlx::query("INSERT INTO users (email) VALUES ('second@it.example')")
        .execute(h.pool())
        .await
        .unwrap();
    let second: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'second@it.example'")
        .fetch_one(h.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(h.workspace_id)
        .bind(second)
        .execute(h.pool())
        .await
        .unwrap();
    let (s, _) = call(
        reqwest::Method::PUT,
        &member,
        &owner,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let alerts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'account_alert' AND payload->>'alert' = 'role_changed'",
    )
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(alerts, 1);
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_events WHERE user_id = $1 AND kind = 'role_changed'",
    )
    .bind(owner_id)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_e_mail_changes_need_the_password_and_are_told_to_old_and_new_addresses() {
    let (h, smtp, web) = with_smtp().await;
    let owner = h.owner_token().await;
    let post = reqwest::Method::POST;
    let url = |path: &str| format!("{web}/api/v1/me/{path}");
    let first = "an old passphrase of mine";
    sqlx::query("UPDATE users SET password_hash = NULL WHERE email = $1")
        .bind(OWNER_EMAIL)
        .execute(h.pool())
        .await
        .unwrap();
    // No password yet: nothing matches.
    let change =
        |current: &str, new: &str| Some(json!({"current_password": current, "new_password": new}));
    let (s, _) = call(post.clone(), &url("password"), &owner, change("", first)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let owner_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(OWNER_EMAIL)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let hash = moonengage_accounts::password::hash(first.to_owned().into())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(owner_id)
        .bind(hash)
        .execute(h.pool())
        .await
        .unwrap();

    let (s, body) = call(
        post.clone(),
        &url("password"),
        &owner,
        change(first, "password1234"),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("commonly used"),
        "{body}"
    );
    let (s, _) = call(
        post.clone(),
        &url("password"),
        &owner,
        change("wrong password!", "a brand new passphrase"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let second = "a brand new passphrase";
    let (s, body) = call(
        post.clone(),
        &url("password"),
        &owner,
        change(first, second),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let output = wait_for(&smtp, "[MoonEngage] Your password was changed").await;
    assert!(output.contains(&format!("To: {OWNER_EMAIL}")));
    assert!(
        !output.contains(second) && !output.contains(first),
        "no password in e-mail"
    );

    let email = |password: &str, new: &str| Some(json!({"password": password, "new_email": new}));
    let (s, _) = call(
        post.clone(),
        &url("email"),
        &owner,
        email(first, "moved@it.example"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the old password no longer works");
    let (s, body) = call(
        post.clone(),
        &url("email"),
        &owner,
        email(second, "not an address"),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = call(
        post,
        &url("email"),
        &owner,
        email(second, "Moved@IT.example"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let subject = "[MoonEngage] Your login e-mail was changed";
    eventually(
        "both addresses hear of the change",
        Duration::from_secs(30),
        || async { smtp.count(subject) == 2 },
    )
    .await;
    let output = smtp.output();
    assert!(
        output.contains(&format!("To: {OWNER_EMAIL}")) && output.contains("To: moved@it.example")
    );
    // The job forgets the old address just after the e-mail went.
    eventually(
        "the old address is forgotten once told",
        Duration::from_secs(10),
        || async {
            let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM email_changes")
                .fetch_one(h.pool())
                .await
                .unwrap();
            kept == 0
        },
    )
    .await;
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM jobs")
        .fetch_all(h.pool())
        .await
        .unwrap();
    assert!(payloads.iter().all(|p| !p.contains('@')), "{payloads:?}");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM account_events WHERE user_id = $1 ORDER BY id")
            .bind(owner_id)
            .fetch_all(h.pool())
            .await
            .unwrap();
    assert_eq!(kinds, ["password_changed", "email_changed"]);
}
