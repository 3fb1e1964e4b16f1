//! Workspaces keep to themselves: every operation of the served OpenAPI document, called with
//! another workspace's token and this workspace's ids, answers 404 (lists show none of it); a
//! viewer reads but never writes; platform routes are operators' only; expired and revoked
//! tokens are refused; a token cannot mint a token above its role; the CLI refuses another
//! workspace's objects by name. The walk knows how to call each operation of the document and
//! fails on one it does not, so a new route is covered or this test breaks.

use std::collections::BTreeSet;

use moonengage_accounts::{Role, tokens, workspaces};
use moonengage_privacy::dsr::{self, Channel, DsrType};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{Harness, OPERATOR_EMAIL, OWNER_EMAIL, Person, bin_dir, repo_root};

/// Workspace A's objects, which workspace B must never reach.
struct Ids {
    page: i64,
    fb_page_id: String,
    campaign: i64,
    request: i64,
    platform_request: i64,
    token: i64,
    incident: i64,
    /// An admin of A whose role the walk sets (to what it is).
    member: i64,
    /// A viewer of A the walk removes.
    removable: i64,
    /// A's maintenance grant.
    grant: i64,
}

/// What an operation is about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    /// A workspace's data: writes need admin.
    Workspace,
    /// The platform's (operators only).
    Platform,
    /// The caller's own credentials (any role).
    Own,
}

/// How to call one operation of the document, and what to expect.
struct Case {
    scope: Scope,
    /// The `{id}` of the path, from A's objects.
    id: Option<fn(&Ids) -> i64>,
    /// The JSON body, naming A's objects where it names any.
    body: Option<fn(&Ids) -> Value>,
    /// What another workspace's owner gets: a status, or (for a list) 200 without A's ids.
    other: Expect,
    /// What a viewer of A gets.
    viewer: u16,
}

enum Expect {
    Status(u16),
    ListWithout(fn(&Ids) -> i64),
}

fn case(method: &Method, path: &str) -> Option<Case> {
    use Expect::{ListWithout, Status};
    use Scope::{Own, Platform, Workspace};
    let page = Some((|ids: &Ids| ids.page) as fn(&Ids) -> i64);
    let campaign = Some((|ids: &Ids| ids.campaign) as fn(&Ids) -> i64);
    let request = Some((|ids: &Ids| ids.request) as fn(&Ids) -> i64);
    let incident = Some((|ids: &Ids| ids.incident) as fn(&Ids) -> i64);
    let grant = Some((|ids: &Ids| ids.grant) as fn(&Ids) -> i64);
    let write = |id, body| Case {
        scope: Workspace,
        id,
        body,
        other: Status(404),
        viewer: 403,
    };
    let read = |id| Case {
        scope: Workspace,
        id,
        body: None,
        other: Status(404),
        viewer: 200,
    };
    // Each answers to its own password only; the walk gives a wrong one.
    let own_password = |body| Case {
        scope: Own,
        id: None,
        body: Some(body),
        other: Status(403),
        viewer: 403,
    };
    let platform = |id, body: Option<fn(&Ids) -> Value>| Case {
        scope: Platform,
        id,
        body,
        other: Status(404),
        viewer: 404,
    };
    let incident_body: Option<fn(&Ids) -> Value> = Some(|_| {
        json!({"detected_at": "2026-12-01T09:00:00Z", "categories": ["first_names"],
               "people_affected": 1, "description": "walk"})
    });
    Some(match (method.as_str(), path) {
        ("POST", "/api/v1/pages") => Case {
            // A Facebook Page connects to one workspace: B registering A's is a conflict.
            other: Status(409),
            ..write(
                None,
                Some(|ids| json!({"fb_page_id": ids.fb_page_id, "name": "x", "access_token": "t"})),
            )
        },
        ("GET", "/api/v1/pages") => Case {
            other: ListWithout(|ids| ids.page),
            ..read(None)
        },
        ("PUT", "/api/v1/pages/{id}/send_rate") => write(page, Some(|_| json!({"send_rate": 10}))),
        ("POST", "/api/v1/pages/{id}/resume") => write(page, None),
        ("POST", "/api/v1/pages/{id}/subscribers/import") => write(
            page,
            Some(|_| {
                json!([{"psid": "123456", "opted_in_at": "2026-12-01T09:00:00Z",
                        "consent_source": "walk"}])
            }),
        ),
        ("GET", "/api/v1/pages/{id}/subscribers/counts") => read(page),
        ("POST", "/api/v1/campaigns") => write(
            None,
            Some(|ids| json!({"page_id": ids.page, "name": "walk", "template": "Hi"})),
        ),
        ("GET", "/api/v1/campaigns/{id}") => read(campaign),
        ("POST", "/api/v1/campaigns/{id}/schedule") => write(campaign, Some(|_| json!({}))),
        ("POST", "/api/v1/campaigns/{id}/pause" | "/api/v1/campaigns/{id}/resume") => {
            write(campaign, None)
        }
        ("POST", "/api/v1/campaigns/{id}/cancel") => write(campaign, None),
        ("POST", "/api/v1/dsr") => write(
            None,
            Some(|ids| json!({"type": "export", "page_id": ids.page, "psid": "123456"})),
        ),
        ("GET", "/api/v1/dsr/{id}") => read(request),
        ("POST", "/api/v1/dsr/{id}/export-link") => write(request, None),
        ("POST", "/api/v1/policy-versions") => platform(
            None,
            Some(|_| json!({"version": "walk", "summary": "s", "url": "https://x.example/p"})),
        ),
        ("GET", "/api/v1/policy-versions" | "/api/v1/incidents") => platform(None, None),
        ("POST", "/api/v1/incidents") => platform(None, incident_body),
        ("GET", "/api/v1/incidents/{id}") => platform(incident, None),
        ("PATCH", "/api/v1/incidents/{id}") => {
            platform(incident, Some(|_| json!({"people_affected": 2})))
        }
        ("POST", "/api/v1/incidents/{id}/notice") => platform(incident, Some(|_| json!({}))),
        ("POST", "/api/v1/tokens") => Case {
            scope: Own,
            id: None,
            body: Some(|_| json!({"name": "walk", "role": "viewer"})),
            other: Status(201),
            viewer: 201,
        },
        ("GET", "/api/v1/tokens") => Case {
            scope: Own,
            id: None,
            body: None,
            other: ListWithout(|ids| ids.token),
            viewer: 200,
        },
        // A's owner's token: neither B's nor the viewer's to revoke.
        ("DELETE", "/api/v1/tokens/{id}") => Case {
            scope: Own,
            id: Some(|ids| ids.token),
            body: None,
            other: Status(404),
            viewer: 404,
        },
        // Logging out ends the token it is called with (the walk gives it one of its own).
        ("POST", "/api/v1/logout") => Case {
            scope: Own,
            id: None,
            body: None,
            other: Status(204),
            viewer: 204,
        },
        ("GET", "/api/v1/members") => Case {
            other: ListWithout(|ids| ids.member),
            ..read(None)
        },
        ("PUT", "/api/v1/members/{user_id}") => {
            write(Some(|ids| ids.member), Some(|_| json!({"role": "admin"})))
        }
        ("DELETE", "/api/v1/members/{user_id}") => write(Some(|ids| ids.removable), None),
        // An invitation names nobody of A: B's owner invites into B.
        ("POST", "/api/v1/invitations") => Case {
            other: Status(201),
            ..write(
                None,
                Some(|_| json!({"email": "invited@it.example", "role": "viewer"})),
            )
        },
        // The confirmation is never the caller's workspace name, so nothing is cancelled.
        ("POST", "/api/v1/workspace/cancel") => Case {
            other: Status(422),
            ..write(None, Some(|_| json!({"confirm": "not the name"})))
        },
        // A grant names an operator, not A: B's owner grants B.
        ("POST", "/api/v1/maintenance") => Case {
            other: Status(201),
            ..write(
                None,
                Some(|_| json!({"operator_email": OPERATOR_EMAIL, "reason": "walk"})),
            )
        },
        ("GET", "/api/v1/maintenance") => Case {
            other: ListWithout(|ids| ids.grant),
            viewer: 403,
            ..read(None)
        },
        ("DELETE", "/api/v1/maintenance/{id}") => write(grant, None),
        ("POST", "/api/v1/me/password") => own_password(
            |_| json!({"current_password": "not my password", "new_password": "a long new passphrase"}),
        ),
        ("POST", "/api/v1/me/email") => {
            own_password(|_| json!({"password": "not my password", "new_email": OWNER_EMAIL}))
        }
        _ => return None,
    })
}

/// Every operation of the served document, as (method, path).
async fn operations(web: &str) -> Vec<(Method, String)> {
    let document: Value = reqwest::get(format!("{web}/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            operations.push((method, path.clone()));
        }
    }
    assert!(operations.len() > 20, "the document lists the API");
    operations
}

/// Who calls, with which token.
struct Caller {
    token: String,
    /// A token of the same kind, for logging out.
    spare: String,
}

async fn call(
    web: &str,
    caller: &Caller,
    method: &Method,
    path: &str,
    c: &Case,
    ids: &Ids,
) -> (u16, Value) {
    let path = match c.id {
        Some(id) => path
            .replace("{id}", &id(ids).to_string())
            .replace("{user_id}", &id(ids).to_string()),
        None => path.to_owned(),
    };
    let token = if path.ends_with("/logout") {
        &caller.spare
    } else {
        &caller.token
    };
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{web}{path}"))
        .bearer_auth(token);
    if let Some(body) = c.body {
        request = request.json(&body(ids));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn token_of(h: &Harness, workspace_id: i64, user_id: i64, role: Role) -> (i64, String) {
    let created = tokens::create(
        &mut h.pool().acquire().await.unwrap(),
        tokens::Request {
            workspace_id,
            user_id,
            name: "tenancy",
            role,
            days: 1,
            max_days: 1,
        },
    )
    .await
    .unwrap();
    (created.id, created.token.expose_secret().to_owned())
}

/// Workspace A (the harness's) with a Page, subscribers, a campaign, a request, a token; an
/// incident and a platform-level request; workspace B with its owner.
async fn two_workspaces(h: &mut Harness) -> (String, Ids, i64, i64) {
    let web = h.start_web().await;
    let fb_page_id = "777000111";
    let page = h.add_page(fb_page_id).await;
    h.seed(page, fb_page_id, &[Person::in_window("Ann")]).await;
    let campaign = h.campaign(page, "Hi {{page_name}}").await;
    let a_owner = h.owner_token().await;
    let http = reqwest::Client::new();
    let import = http
        .post(format!("{web}/api/v1/pages/{page}/subscribers/import"))
        .bearer_auth(&a_owner)
        .header("content-type", "text/csv")
        .body("psid,opted_in_at,consent_source\n4242,2026-12-01T09:00:00Z,import\n")
        .send()
        .await
        .unwrap();
    assert_eq!(import.status(), StatusCode::OK);
    let filed: Value = http
        .post(format!("{web}/api/v1/dsr"))
        .bearer_auth(&a_owner)
        .json(&json!({"type": "export", "page_id": page, "psid": "4242"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request = filed["id"].as_i64().expect("a filed request");
    let mut conn = h.pool().acquire().await.unwrap();
    let platform_request = dsr::file_sealed(
        &mut conn,
        DsrType::Erasure,
        Channel::FacebookCallback,
        h.keyring.seal(
            moonengage_privacy::crypto::SealedField::DsrSubject,
            b"{\"app_scoped_id\":\"1\"}",
        ),
        3,
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let operator = h.operator_token().await;
    let declared: Value = http
        .post(format!("{web}/api/v1/incidents"))
        .bearer_auth(&operator)
        .json(
            &json!({"detected_at": "2026-12-01T09:00:00Z", "categories": ["first_names"],
                      "people_affected": 1, "description": "a lost laptop"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a_user = moonengage_accounts::users::id_by_email(h.pool(), OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();
    let (token, _) = token_of(h, h.workspace_id, a_user, Role::Owner).await;
    let grant: Value = http
        .post(format!("{web}/api/v1/maintenance"))
        .bearer_auth(&a_owner)
        .json(&json!({"operator_email": OPERATOR_EMAIL, "reason": "the walk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tx = h.pool().begin().await.unwrap();
    let mut members = Vec::new();
    for (email, role) in [
        ("admin@it.example", Role::Admin),
        ("leaving@it.example", Role::Viewer),
    ] {
        let (user, _) = moonengage_accounts::users::find_or_create(&mut *tx, email)
            .await
            .unwrap();
        workspaces::set_member(&mut tx, h.workspace_id, user, role)
            .await
            .unwrap();
        members.push(user);
    }
    let [member, removable] = members[..] else {
        unreachable!("two members")
    };
    tx.commit().await.unwrap();
    let b = workspaces::create(h.pool(), "B", "owner@b.example")
        .await
        .unwrap();
    let ids = Ids {
        page,
        fb_page_id: fb_page_id.to_owned(),
        campaign,
        request,
        platform_request,
        token,
        incident: declared["id"].as_i64().expect("an incident"),
        member,
        removable,
        grant: grant["id"].as_i64().expect("a grant"),
    };
    (web, ids, b.workspace_id, b.owner_id)
}

#[tokio::test]
async fn every_operation_of_the_document_keeps_another_workspace_out() {
    let mut h = Harness::new().await;
    let (web, ids, b_workspace, b_owner) = two_workspaces(&mut h).await;
    let b = Caller {
        token: token_of(&h, b_workspace, b_owner, Role::Owner).await.1,
        spare: token_of(&h, b_workspace, b_owner, Role::Owner).await.1,
    };
    let mut unknown = Vec::new();
    let mut walked = 0;
    for (method, path) in operations(&web).await {
        let Some(c) = case(&method, &path) else {
            unknown.push(format!("{method} {path}"));
            continue;
        };
        let (status, body) = call(&web, &b, &method, &path, &c, &ids).await;
        match c.other {
            Expect::Status(expected) => assert_eq!(
                status, expected,
                "{method} {path} ({:?}) with another workspace's token and this one's ids: {body}",
                c.scope
            ),
            Expect::ListWithout(a_id) => {
                assert_eq!(status, 200, "{method} {path}: {body}");
                let listed: BTreeSet<i64> = body
                    .as_array()
                    .expect("a list")
                    .iter()
                    .filter_map(|item| item["id"].as_i64().or(item["user_id"].as_i64()))
                    .collect();
                assert!(
                    !listed.contains(&a_id(&ids)),
                    "{method} {path} lists another workspace's object: {body}"
                );
            }
        }
        walked += 1;
    }
    assert!(
        unknown.is_empty(),
        "the walk does not know how to call {unknown:?}: add them to `case`"
    );
    assert!(walked > 20);

    // A platform-level request is no workspace's: its owners do not see it, an operator does.
    let a_owner = h.owner_token().await;
    let path = format!("{web}/api/v1/dsr/{}", ids.platform_request);
    let http = reqwest::Client::new();
    let status = |token: String| {
        let request = http.get(&path).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(a_owner).await, StatusCode::NOT_FOUND);
    assert_eq!(status(h.operator_token().await).await, StatusCode::OK);
    let versions = http
        .get(format!("{web}/api/v1/policy-versions"))
        .bearer_auth(h.operator_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.status(), StatusCode::OK);

    // The owner of A reaches each of the walk's objects (so B's 404s are about the workspace).
    let a = Caller {
        token: h.owner_token().await,
        spare: h.owner_token().await,
    };
    for (method, path) in operations(&web).await {
        let c = case(&method, &path).expect("known");
        if c.scope != Scope::Workspace {
            continue;
        }
        let (status, body) = call(&web, &a, &method, &path, &c, &ids).await;
        assert!(
            status != 404 && status < 500,
            "{method} {path} as A's owner: {status} {body}"
        );
    }
}

#[tokio::test]
async fn a_viewer_reads_and_never_writes() {
    let mut h = Harness::new().await;
    let (web, ids, _, _) = two_workspaces(&mut h).await;
    let mut tx = h.pool().begin().await.unwrap();
    let (viewer, _) = moonengage_accounts::users::find_or_create(&mut *tx, "viewer@it.example")
        .await
        .unwrap();
    workspaces::set_member(&mut tx, h.workspace_id, viewer, Role::Viewer)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let caller = Caller {
        token: token_of(&h, h.workspace_id, viewer, Role::Viewer).await.1,
        spare: token_of(&h, h.workspace_id, viewer, Role::Viewer).await.1,
    };
    for (method, path) in operations(&web).await {
        let c = case(&method, &path).expect("known to the walk");
        let (status, body) = call(&web, &caller, &method, &path, &c, &ids).await;
        assert_eq!(status, c.viewer, "{method} {path} as a viewer: {body}");
        if c.scope == Scope::Workspace && method != Method::GET {
            assert_eq!(
                body["error"]["code"], "insufficient_role",
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_and_no_token_mints_above_its_role() {
    let mut h = Harness::new().await;
    let web = h.start_web().await;
    let http = reqwest::Client::new();
    let pages = |token: String| {
        let request = http.get(format!("{web}/api/v1/pages")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    let owner = moonengage_accounts::users::id_by_email(h.pool(), OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();

    let (expired_id, expired) = token_of(&h, h.workspace_id, owner, Role::Owner).await;
    assert_eq!(pages(expired.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(expired_id)
        .execute(h.pool())
        .await
        .unwrap();
    assert_eq!(pages(expired).await, StatusCode::UNAUTHORIZED);

    let (revoked_id, revoked) = token_of(&h, h.workspace_id, owner, Role::Owner).await;
    let revoke = http
        .delete(format!("{web}/api/v1/tokens/{revoked_id}"))
        .bearer_auth(h.owner_token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_eq!(pages(revoked).await, StatusCode::UNAUTHORIZED);

    let mint = |token: String, role: &'static str| {
        let request = http
            .post(format!("{web}/api/v1/tokens"))
            .bearer_auth(token)
            .json(&json!({"name": "minted", "role": role}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let admin = h.token(Role::Admin).await;
    let (status, body) = mint(admin.clone(), "owner").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_role");
    let (status, body) = mint(h.token(Role::Viewer).await, "admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = mint(admin, "admin").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A viewer mints viewer tokens (its own credentials are its to manage).
    let (status, body) = mint(h.token(Role::Viewer).await, "viewer").await;
    assert_eq!(
        (status, body["role"].as_str()),
        (StatusCode::CREATED, Some("viewer"))
    );
}

/// Runs `moonengage` and returns (success, stdout, stderr).
async fn cli(h: &Harness, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(bin_dir().join("moonengage"))
        .args(args)
        .envs(h.process_env())
        .current_dir(repo_root())
        .output()
        .await
        .expect("moonengage is built (cargo build --workspace --bins)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_refuses_another_workspaces_objects_and_makes_operators() {
    let mut h = Harness::new().await;
    let (web, ids, b_workspace, _) = two_workspaces(&mut h).await;
    let b = b_workspace.to_string();
    let campaign = ids.campaign.to_string();
    let page = ids.page.to_string();
    let request = ids.request.to_string();
    for (args, named) in [
        (
            vec!["campaign", "show", "--workspace", &b, &campaign],
            "campaign",
        ),
        (
            vec!["campaign", "schedule", "--workspace", &b, &campaign],
            "campaign",
        ),
        (
            vec![
                "campaign",
                "create",
                "--workspace",
                &b,
                "--page",
                &page,
                "--name",
                "x",
                "--template",
                "Hi",
            ],
            "Page",
        ),
        (
            vec![
                "subscribers",
                "seed",
                "--workspace",
                &b,
                "--page",
                &page,
                "--count",
                "1",
            ],
            "Page",
        ),
        (
            vec!["dsr", "reissue-export-link", "--workspace", &b, &request],
            "request",
        ),
    ] {
        let (ok, _, stderr) = cli(&h, &args).await;
        assert!(!ok, "{args:?} succeeded in another workspace");
        let id = args
            .iter()
            .rev()
            .find(|a| a.parse::<i64>().is_ok())
            .unwrap();
        let expected = if named == "Page" {
            format!("workspace {b} has no Page {page}")
        } else {
            format!("workspace {b} has no {named} {id}")
        };
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
    let a = h.workspace_id.to_string();
    let (ok, shown, stderr) = cli(&h, &["campaign", "show", "--workspace", &a, &campaign]).await;
    assert!(ok, "{stderr}");
    assert!(shown.contains(&format!("\"id\": {campaign}")), "{shown}");

    let (ok, out, stderr) = cli(
        &h,
        &["operator", "create", "--email", "ops@moonengage.example"],
    )
    .await;
    assert!(ok, "{stderr}");
    let token = out.lines().nth(1).expect("the operator's token").to_owned();
    let http = reqwest::Client::new();
    for (path, expected) in [
        ("/api/v1/incidents", StatusCode::OK),
        ("/api/v1/policy-versions", StatusCode::OK),
    ] {
        let status = http
            .get(format!("{web}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, expected, "{path}");
    }
}
