//! Cancellation: an owner cancels a workspace; access ends at once, and the queued job deletes
//! everything of it — the catalog's personal-data tables and every table with a workspace id
//! hold exactly what they held before the workspace existed — while another workspace's rows
//! are untouched, and the owners get a confirmation on the real SMTP test server. The console's
//! form does the same for an owner, confirmed with the name, and for nobody else.

use std::collections::BTreeSet;
use std::time::Duration;

use moonengage_accounts::{Role, tokens, users, workspaces};
use moonengage_privacy::catalog;
use reqwest::header::SET_COOKIE;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::account_mail::{call, wait_for, with_smtp};
use crate::console;
use crate::helpers::{Harness, OWNER_EMAIL, Person, eventually};

/// Every table the scan compares: the catalog's, those with a workspace id, and the accounts'.
async fn tables(h: &Harness) -> BTreeSet<String> {
    let mut tables: BTreeSet<String> = catalog::COLUMNS
        .iter()
        .map(|c| c.table.to_owned())
        .collect();
    let with_workspace: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name = 'workspace_id'",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    tables.extend(with_workspace);
    tables.extend(
        [
            "workspaces",
            "users",
            "memberships",
            "deliveries",
            "campaign_tallies",
        ]
        .map(String::from),
    );
    tables.remove("jobs");
    tables
}

/// Every row of every compared table, as JSON text, per table.
async fn snapshot(h: &Harness, tables: &BTreeSet<String>) -> Vec<(String, BTreeSet<String>)> {
    let mut all = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT to_jsonb(t)::text FROM {table} t"
        )))
        .fetch_all(h.pool())
        .await
        .unwrap();
        all.push((table.clone(), rows.into_iter().collect()));
    }
    all
}

/// A Page of `workspace_id` with people, a campaign with deliveries, a webhook event, a
/// suppression and a data-subject request with an export.
async fn fill(h: &Harness, workspace_id: i64, fb_page_id: &str) -> i64 {
    let page = h.add_page(fb_page_id).await;
    sqlx::query("UPDATE pages SET workspace_id = $2 WHERE id = $1")
        .bind(page)
        .bind(workspace_id)
        .execute(h.pool())
        .await
        .unwrap();
    h.seed(
        page,
        fb_page_id,
        &[Person::in_window("Ann"), Person::in_window("Bo")],
    )
    .await;
    let campaign = h.campaign_in(workspace_id, page, "Hi").await;
    let statements = [
        "INSERT INTO deliveries (campaign_id, subscriber_id, status)
         SELECT $2, id, 'sent' FROM subscribers WHERE page_id = $1",
        "INSERT INTO webhook_events (mid_hash, page_fb_id, kind, intent, event_at, processed_at)
         VALUES (sha256(($3 || 'mid')::bytea), $3, 'message', 'none', now(), now())",
        "INSERT INTO suppressions (page_id, psid_index) VALUES ($1, sha256($3::bytea))",
        "WITH r AS (
             INSERT INTO dsr_requests (type, channel, due_at, confirmation_code, workspace_id)
             SELECT 'export', 'admin', now() + interval '30 days', 'CANCEL' || $3, workspace_id
             FROM pages WHERE id = $1 RETURNING id)
         INSERT INTO exports (dsr_request_id, subscriber_id, payload, expires_at, token_hash)
         SELECT r.id, (SELECT min(id) FROM subscribers WHERE page_id = $1), '\\x00'::bytea,
             now() + interval '7 days', sha256(('export' || $3)::bytea) FROM r",
    ];
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(page)
            .bind(campaign)
            .bind(fb_page_id)
            .execute(h.pool())
            .await
            .unwrap();
    }
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_deletes_everything_of_the_workspace_and_nothing_of_another() {
    let (h, smtp, web) = with_smtp().await;
    // The other workspace (the harness's), with its data and a token, before the cancelled
    // one exists.
    fill(&h, h.workspace_id, "7001").await;
    let _theirs = h.owner_token().await;
    let compared = tables(&h).await;
    let before = snapshot(&h, &compared).await;

    let gone = workspaces::create(h.pool(), "Closing Cafe", "closer@closing.example")
        .await
        .unwrap();
    let shared: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(OWNER_EMAIL)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let mut conn = h.pool().acquire().await.unwrap();
    workspaces::set_member(&mut conn, gone.workspace_id, shared, Role::Admin)
        .await
        .unwrap();
    let request = |user_id, role| tokens::Request {
        workspace_id: gone.workspace_id,
        user_id,
        name: "cancel test",
        role,
        days: 1,
        max_days: 1,
    };
    let owner = tokens::create(&mut conn, request(gone.owner_id, Role::Owner))
        .await
        .unwrap();
    let admin = tokens::create(&mut conn, request(shared, Role::Admin))
        .await
        .unwrap();
    drop(conn);
    let (owner, admin) = (
        owner.token.expose_secret().to_owned(),
        admin.token.expose_secret().to_owned(),
    );
    fill(&h, gone.workspace_id, "7002").await;
    let (s, _) = call(
        Method::POST,
        &format!("{web}/api/v1/invitations"),
        &owner,
        Some(json!({"email": "late@closing.example", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    let cancel = format!("{web}/api/v1/workspace/cancel");
    let (s, _) = call(
        Method::POST,
        &cancel,
        &admin,
        Some(json!({"confirm": "Closing Cafe"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "owners only");
    let (s, body) = call(
        Method::POST,
        &cancel,
        &owner,
        Some(json!({"confirm": "closing"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = call(
        Method::POST,
        &cancel,
        &owner,
        Some(json!({"confirm": "Closing Cafe"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (s, _) = call(Method::GET, &format!("{web}/api/v1/members"), &owner, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "access ends at once");

    let output = wait_for(
        &smtp,
        "[MoonEngage] Workspace \"Closing Cafe\" is cancelled and deleted",
    )
    .await;
    assert!(output.contains("To: closer@closing.example"), "{output}");
    eventually(
        "the workspace is deleted",
        Duration::from_secs(30),
        || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE id = $1")
                .bind(gone.workspace_id)
                .fetch_one(h.pool())
                .await
                .unwrap();
            left == 0
        },
    )
    .await;
    let after = snapshot(&h, &compared).await;
    for ((table, was), (_, is)) in before.iter().zip(&after) {
        let added: Vec<_> = is.difference(was).collect();
        let lost: Vec<_> = was.difference(is).collect();
        assert!(
            added.is_empty(),
            "{table} still holds rows of the cancelled workspace: {added:?}"
        );
        assert!(
            lost.is_empty(),
            "{table} lost rows of the other workspace: {lost:?}"
        );
    }
    let jobs: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM jobs")
        .fetch_all(h.pool())
        .await
        .unwrap();
    let about = format!("\"workspace_id\": {}", gone.workspace_id);
    assert!(jobs.iter().all(|p| !p.contains(&about)), "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cancels_in_the_console_with_the_name_and_nobody_gets_in_afterwards() {
    let mut h = Harness::new().await;
    let owner = console::owner(&h).await;
    let web = h.start_web().await;
    let viewer_email = "viewer@it.example";
    let mut conn = h.pool().acquire().await.unwrap();
    let (viewer, _) = users::find_or_create(&mut *conn, viewer_email)
        .await
        .unwrap();
    users::set_password(&mut conn, viewer, SecretString::from(console::PASSWORD))
        .await
        .unwrap();
    workspaces::set_member(&mut conn, h.workspace_id, viewer, Role::Viewer)
        .await
        .unwrap();
    drop(conn);
    let cancelled = async || -> bool {
        sqlx::query_scalar("SELECT cancelled_at IS NOT NULL FROM workspaces WHERE id = $1")
            .bind(h.workspace_id)
            .fetch_one(h.pool())
            .await
            .unwrap()
    };

    // A viewer sees the workspace but no form, and a forged post of theirs is refused.
    let theirs = console::session_of(&web, viewer_email).await;
    let page = console::get(&web, "/console/workspace", &theirs).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("Only an owner can cancel"), "{page}");
    let refused = console::post(
        &web,
        "/console/workspace/cancel",
        &theirs,
        &[("csrf", &console::csrf(&page)), ("confirm", "it")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!cancelled().await);

    // The owner: a wrong name is refused and changes nothing; the right one cancels.
    let cookie = console::session(&web).await;
    let page = console::get(&web, "/console/workspace", &cookie).await;
    let page = page.text().await.unwrap();
    assert!(
        page.contains("action=\"/console/workspace/cancel\""),
        "{page}"
    );
    let token = console::csrf(&page);
    let wrong = console::post(
        &web,
        "/console/workspace/cancel",
        &cookie,
        &[("csrf", &token), ("confirm", "not it")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("exact name"));
    assert!(!cancelled().await);
    assert!(console::logged_in(&web, &cookie).await);

    let done = console::post(
        &web,
        "/console/workspace/cancel",
        &cookie,
        &[("csrf", &token), ("confirm", "it")],
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    let expired = done.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(expired.contains("Max-Age=0"), "{expired}");
    assert!(done.text().await.unwrap().contains("being deleted"));
    assert!(cancelled().await);
    // Access ends at once, for the owner and for every other member.
    assert!(!console::logged_in(&web, &cookie).await);
    assert!(!console::logged_in(&web, &theirs).await);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'workspace_cancel' AND payload->>'workspace_id' = $1",
    )
    .bind(h.workspace_id.to_string())
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(queued, 1, "the deletion is queued");
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_events
         WHERE user_id = $1 AND kind = 'cancellation_requested' AND origin IS NOT NULL",
    )
    .bind(owner)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(
        recorded, 1,
        "the owner's activity shows it, with its coarse origin"
    );
}
