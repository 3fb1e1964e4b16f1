//! Maintenance access: an owner grants an operator time-limited access; the operator's token
//! (from the CLI) works only while the grant is live, every use lands in the owners' activity,
//! and the owners are e-mailed when access is granted, first used and ended.

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;

use crate::account_mail::{call, wait_for, with_smtp};
use crate::helpers::moonengage;

const OPERATOR: &str = "op@moonengage.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_only_inside_a_live_grant_and_owners_hear_of_every_stage() {
    let (mut h, smtp, web) = with_smtp().await;
    h.start_scheduler().await;
    sqlx::query(
        "INSERT INTO users (email, is_operator) VALUES ($1, true), ('plain@it.example', false)",
    )
    .bind(OPERATOR)
    .execute(h.pool())
    .await
    .unwrap();
    let owner = h.owner_token().await;
    let admin = h.token(moonengage_accounts::Role::Admin).await;
    let grants = format!("{web}/api/v1/maintenance");
    let body = |email: &str| {
        Some(json!({"operator_email": email, "reason": "stuck campaign #7", "hours": 2}))
    };
    let (s, _) = call(Method::POST, &grants, &admin, body(OPERATOR)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "owners only");
    let (s, _) = call(Method::GET, &grants, &admin, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "owners only");
    let (s, b) = call(Method::POST, &grants, &owner, body("plain@it.example")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, granted) = call(Method::POST, &grants, &owner, body(OPERATOR)).await;
    assert_eq!(s, StatusCode::CREATED, "{granted}");
    let grant_id = granted["id"].as_i64().unwrap();
    let output = wait_for(
        &smtp,
        "[MoonEngage] Maintenance access granted to workspace \"it\"",
    )
    .await;
    assert!(
        output.contains("stuck campaign #7") && output.contains(OPERATOR),
        "{output}"
    );

    let printed = moonengage(
        &h,
        &[
            "maintenance",
            "token",
            "--grant",
            &grant_id.to_string(),
            "--operator-email",
            OPERATOR,
        ],
    )
    .await;
    let token = printed.trim().to_owned();
    let members = format!("{web}/api/v1/members");
    for _ in 0..2 {
        let (s, b) = call(Method::GET, &members, &token, None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // Admin at most: owners' acts stay refused, and nobody is let in through it.
    let (s, _) = call(Method::GET, &grants, &token, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let invite = Some(json!({"email": "friend@op.example", "role": "admin"}));
    let (s, _) = call(
        Method::POST,
        &format!("{web}/api/v1/invitations"),
        &token,
        invite,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    wait_for(
        &smtp,
        "[MoonEngage] Maintenance access used in workspace \"it\"",
    )
    .await;
    let uses: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_events e JOIN users u ON u.id = e.user_id
         WHERE u.email = $1 AND e.kind = 'maintenance_used'",
    )
    .bind(crate::helpers::OWNER_EMAIL)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(uses, 4, "every use is in the owner's activity");

    // Revoked: refused at once, and told at once.
    let (s, _) = call(
        Method::DELETE,
        &format!("{grants}/{grant_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(Method::GET, &members, &token, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        Method::DELETE,
        &format!("{grants}/{grant_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let ended = "[MoonEngage] Maintenance access ended in workspace \"it\"";
    wait_for(&smtp, ended).await;

    // A grant that runs out is told once by the leader, and its token stops.
    let (s, second) = call(Method::POST, &grants, &owner, body(OPERATOR)).await;
    assert_eq!(s, StatusCode::CREATED);
    let second_id = second["id"].as_i64().unwrap();
    let printed = moonengage(
        &h,
        &[
            "maintenance",
            "token",
            "--grant",
            &second_id.to_string(),
            "--operator-email",
            OPERATOR,
        ],
    )
    .await;
    let second_token = printed.trim().to_owned();
    sqlx::query("UPDATE maintenance_grants SET expires_at = now() WHERE id = $1")
        .bind(second_id)
        .execute(h.pool())
        .await
        .unwrap();
    let (s, _) = call(Method::GET, &members, &second_token, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    crate::helpers::eventually(
        "the expiry is told",
        std::time::Duration::from_secs(30),
        || async { smtp.count(ended) == 2 },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(smtp.count(ended), 2, "told once");
    let (s, list) = call(Method::GET, &grants, &owner, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(
        list[1]["first_used_at"].is_string() && list[1]["revoked_at"].is_string(),
        "{list}"
    );
}
