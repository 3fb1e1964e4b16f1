//! The console and its sessions: logout and "log out everywhere" end sessions for good, idle and
//! absolute expiry refuse, the brute-force limit holds under parallel guesses (per account and
//! per origin network, with Redis and with Redis stopped), and the pages work in headless
//! Chromium without JavaScript under the console's CSP.

use moonengage_accounts::{sessions, users};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use secrecy::SecretString;

use crate::browser::Browser;
use crate::helpers::{Harness, OWNER_EMAIL, RedisServer, eventually};
use crate::notifications::secs;

pub(crate) const PASSWORD: &str = "lunar-tide-4417-quartz";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The harness owner, with a password.
pub(crate) async fn owner(h: &Harness) -> i64 {
    let id = users::id_by_email(h.pool(), OWNER_EMAIL)
        .await
        .unwrap()
        .unwrap();
    users::set_password(
        &mut h.pool().acquire().await.unwrap(),
        id,
        SecretString::from(PASSWORD),
    )
    .await
    .unwrap();
    id
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(web: &str, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{web}/console/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Logs the harness owner in and returns the session cookie's value.
pub(crate) async fn session(web: &str) -> String {
    session_of(web, OWNER_EMAIL).await
}

/// Logs a user with [`PASSWORD`] in and returns the session cookie's value.
pub(crate) async fn session_of(web: &str, email: &str) -> String {
    let response = login(web, email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let value = cookie
        .strip_prefix("__Host-moonengage_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    value.to_owned()
}

pub(crate) async fn get(web: &str, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{web}{path}"))
        .header(COOKIE, format!("__Host-moonengage_session={cookie}"))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn post(
    web: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!("{web}{path}"))
        .header(COOKIE, format!("__Host-moonengage_session={cookie}"))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Whether the cookie still opens the console (a page) or is sent to log in (a redirect).
pub(crate) async fn logged_in(web: &str, cookie: &str) -> bool {
    let response = get(web, "/console", cookie).await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(response.headers()[LOCATION], "/console/login");
            false
        }
        other => panic!("/console answered {other}"),
    }
}

/// The CSRF token of a page's forms.
pub(crate) fn csrf(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[start..start + 64].to_owned()
}

async fn csrf_of(web: &str, cookie: &str) -> String {
    csrf(&get(web, "/console", cookie).await.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_expires_the_cookie_and_every_page_is_script_free_under_the_csp()
 {
    let mut h = Harness::new().await;
    let user = owner(&h).await;
    let web = h.start_web().await;
    let cookie = session(&web).await;
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'account_alert'")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(alerts, 1, "a first login is from a new origin");

    for path in [
        "/console",
        "/console/sessions",
        "/console/tokens",
        "/console/members",
        "/console/workspace",
    ] {
        let response = get(&web, path, &cookie).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        let page = response.text().await.unwrap();
        assert!(!page.contains("<script"), "{path} has a script");
        assert!(!page.contains("://"), "{path} names another origin");
    }
    let login_page = client()
        .get(format!("{web}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login_page.headers()[CONTENT_SECURITY_POLICY], CSP);
    assert!(!login_page.text().await.unwrap().contains("<script"));
    let members = get(&web, "/console/members", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(members.contains(OWNER_EMAIL) && members.contains("owner"));

    // A form without this session's token is refused and changes nothing.
    let forged = post(
        &web,
        "/console/logout",
        &cookie,
        &[("csrf", &"0".repeat(64))],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(logged_in(&web, &cookie).await);

    let session_id: i64 = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(user)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let token = csrf_of(&web, &cookie).await;
    let out = post(&web, "/console/logout", &cookie, &[("csrf", &token)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()[LOCATION], "/console/login");
    let expired = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        expired.starts_with("__Host-moonengage_session=;") && expired.contains("Max-Age=0"),
        "{expired}"
    );
    // The old cookie and the session id are refused from now on.
    assert!(!logged_in(&web, &cookie).await);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "the session's row is deleted");
    let secret = SecretString::from(cookie.clone());
    assert!(
        sessions::authenticate(h.pool(), &secret, &h.settings.accounts)
            .await
            .unwrap()
            .is_none()
    );
    let again = post(&web, "/console/logout", &cookie, &[("csrf", &token)]).await;
    assert_eq!(again.headers()[LOCATION], "/console/login");
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM account_events WHERE user_id = $1 ORDER BY id")
            .bind(user)
            .fetch_all(h.pool())
            .await
            .unwrap();
    assert_eq!(kinds, ["login", "logout"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_ends_every_session_of_the_user() {
    let mut h = Harness::new().await;
    let user = owner(&h).await;
    let web = h.start_web().await;
    let laptop = session(&web).await;
    let phone = session(&web).await;
    assert!(logged_in(&web, &laptop).await && logged_in(&web, &phone).await);
    let list = get(&web, "/console/sessions", &phone)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(list.matches("/end\"").count(), 2, "{list}");
    assert_eq!(list.matches("(this one)").count(), 1);

    let token = csrf_of(&web, &phone).await;
    let out = post(
        &web,
        "/console/logout-everywhere",
        &phone,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(!logged_in(&web, &laptop).await);
    assert!(!logged_in(&web, &phone).await);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(user)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    // A fresh login works again, and ending one session from the list ends only that one.
    let first = session(&web).await;
    let second = session(&web).await;
    let id: i64 = sqlx::query_scalar("SELECT min(id) FROM sessions WHERE user_id = $1")
        .bind(user)
        .fetch_one(h.pool())
        .await
        .unwrap();
    let token = csrf_of(&web, &second).await;
    let ended = post(
        &web,
        &format!("/console/sessions/{id}/end"),
        &second,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    assert!(!logged_in(&web, &first).await);
    assert!(logged_in(&web, &second).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_expiry_refuse_a_session() {
    let mut h = Harness::new().await;
    let user = owner(&h).await;
    let web = h.start_web().await;
    let idle = h.settings.accounts.session_idle_minutes;

    let cookie = session(&web).await;
    // Used two minutes ago: a request notes it; then idle longer than allowed: refused.
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now() - interval '2 minutes' WHERE user_id = $1",
    )
    .bind(user)
    .execute(h.pool())
    .await
    .unwrap();
    assert!(logged_in(&web, &cookie).await);
    let recent: bool = sqlx::query_scalar(
        "SELECT last_seen_at > now() - interval '30 seconds' FROM sessions WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert!(recent, "a request notes the session's use");
    sqlx::query("UPDATE sessions SET last_seen_at = now() - make_interval(mins => $2 + 1) WHERE user_id = $1")
        .bind(user)
        .bind(i32::try_from(idle).unwrap())
        .execute(h.pool())
        .await
        .unwrap();
    assert!(
        !logged_in(&web, &cookie).await,
        "an idle session is refused"
    );

    let cookie = session(&web).await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1")
        .bind(user)
        .execute(h.pool())
        .await
        .unwrap();
    assert!(
        !logged_in(&web, &cookie).await,
        "a session past its absolute expiry is refused, however recently used"
    );
    // The next login deletes the expired rows.
    let _ = session(&web).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(user)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// Fifty wrong passwords at once for `email`: how many were verified (told "wrong") and how
/// many refused before verification.
async fn guess_fifty(web: &str, email: &str) -> (usize, usize) {
    let answers = futures::future::join_all((0..50).map(|i| async move {
        login(web, email, &format!("wrong-password-{i:04}"))
            .await
            .status()
    }))
    .await;
    let verified = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(verified + refused, 50, "{answers:?}");
    (verified, refused)
}

async fn brute_force_holds(h: &mut Harness) {
    h.settings.accounts.login_attempts_per_account = 5;
    h.settings.accounts.login_attempts_per_origin = 1_000;
    let user = owner(h).await;
    let web = h.start_web().await;

    let (verified, refused) = guess_fifty(&web, OWNER_EMAIL).await;
    assert!(
        verified <= 5,
        "{verified} guesses reached the password check"
    );
    assert!(refused >= 45);
    // Locked: even the right password is refused, with when to come back.
    let locked = login(&web, OWNER_EMAIL, PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let page = locked.text().await.unwrap();
    assert!(
        page.contains("too many attempts, try again in 15 minutes"),
        "{page}"
    );
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_events WHERE user_id = $1 AND kind = 'login_failed'",
    )
    .bind(user)
    .fetch_one(h.pool())
    .await
    .unwrap();
    assert_eq!(
        failed, 51,
        "every refused or wrong login is in the activity"
    );
    // An unknown e-mail is limited the same way.
    let (verified, _) = guess_fifty(&web, "nobody@it.example").await;
    assert!(
        verified <= 5,
        "{verified} guesses of an unknown account were checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_wrong_passwords_reach_the_check_at_most_the_limit_and_lock_the_account() {
    let mut h = Harness::new().await;
    brute_force_holds(&mut h).await;
    // The shared counters are keyed by HMACs: no e-mail and no address in Redis.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:login:*", h.settings.redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in keys {
        assert!(!key.contains('@') && !key.contains("127.0"), "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= 900,
            "{key} expires with the window: {ttl}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limit_holds_in_process_with_redis_stopped() {
    let mut h = Harness::new().await;
    let mut redis = RedisServer::start().await;
    h.settings.redis.url = Some(SecretString::from(redis.url()));
    redis.stop().await;
    brute_force_holds(&mut h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_origin_limit_counts_every_account_from_one_network() {
    let mut h = Harness::new().await;
    h.settings.accounts.login_attempts_per_origin = 6;
    h.settings.web.trust_forwarded_for = true;
    owner(&h).await;
    let web = h.start_web().await;
    let from = |network: &'static str| {
        let web = web.clone();
        move |email: String, password: &'static str| {
            let web = web.clone();
            async move {
                client()
                    .post(format!("{web}/console/login"))
                    .header("x-forwarded-for", format!("192.0.2.1, {network}"))
                    .form(&[("email", email.as_str()), ("password", password)])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        }
    };
    let attacker = from("203.0.113.9");
    for i in 0..6 {
        let status = attacker(format!("someone{i}@it.example"), "not-the-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Six accounts tried from 203.0.113.0/24: the next attempt from there is refused, even
    // with the right password; the same login from another network works.
    assert_eq!(
        attacker(OWNER_EMAIL.into(), PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        from("203.0.113.200")(OWNER_EMAIL.into(), PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the limit is per /24, not per address"
    );
    assert_eq!(
        from("198.51.100.7")(OWNER_EMAIL.into(), PASSWORD).await,
        StatusCode::SEE_OTHER
    );
    let origins: Vec<Option<String>> =
        sqlx::query_scalar("SELECT origin FROM account_events WHERE kind = 'login' ORDER BY id")
            .fetch_all(h.pool())
            .await
            .unwrap();
    assert_eq!(origins, [Some("198.51.100.0/24".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_logs_in_shows_activity_and_logs_out_in_chromium_without_javascript() {
    let mut h = Harness::new().await;
    owner(&h).await;
    let web = h.start_web().await;
    let browser = Browser::start(false).await;

    browser.open(&format!("{web}/console")).await;
    eventually(
        "the console sends a stranger to log in",
        secs(20),
        || async {
            browser
                .dom()
                .await
                .contains("autocomplete=\"current-password\"")
        },
    )
    .await;
    browser.fill("#email", OWNER_EMAIL).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    eventually("the activity page lists the login", secs(20), || async {
        let dom = browser.dom().await;
        dom.contains("<h1>Account activity</h1>") && dom.contains("<td>login</td>")
    })
    .await;
    let dom = browser.dom().await;
    assert!(
        dom.contains("127.0.0.0/24") && dom.contains("Chrome"),
        "{dom}"
    );
    assert!(!dom.contains("<script"));
    // The session cookie, as the browser holds it over plain http://127.0.0.1.
    let cookies = browser.cookies().await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(cookies[0]["name"], "__Host-moonengage_session");
    assert_eq!(cookies[0]["httpOnly"], true);
    assert_eq!(cookies[0]["secure"], true);
    assert_eq!(cookies[0]["sameSite"], "Strict");

    browser.click("nav button[type=submit]").await;
    eventually("logging out lands on the login form", secs(20), || async {
        browser.dom().await.contains("<h1>Log in</h1>")
    })
    .await;
    assert!(browser.cookies().await.is_empty(), "the cookie is gone");
    browser.open(&format!("{web}/console")).await;
    eventually(
        "the activity page now redirects to login",
        secs(20),
        || async { browser.dom().await.contains("<h1>Log in</h1>") },
    )
    .await;
    browser.call(reqwest::Method::DELETE, "", None).await;
}
