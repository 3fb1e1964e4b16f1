//! The public pages in a real browser: Debian's headless Chromium, driven by chromedriver over
//! the W3C WebDriver protocol (plain JSON over HTTP), with JavaScript disabled and a phone-sized
//! window. The unsubscribe page (whose form must post and succeed), the deletion-status page and
//! the privacy page each render (a screenshot with more than one colour), load nothing from
//! another origin (a strict CSP, no URL of another origin in the DOM), fit 390 pixels without
//! horizontal overflow, and leave no cookie.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine as _;
use moonengage_privacy::dsr::{self, Channel, DsrType, Subject};
use moonengage_privacy::policy::{self, NewVersion};
use moonengage_privacy::unsubscribe::{UnsubscribeClaims, UnsubscribeSigner};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::eventually;
use crate::helpers::{Harness, Person, free_port};
use crate::notifications::secs;

/// A phone's viewport, in CSS pixels.
const WIDTH: u32 = 390;
const HEIGHT: u32 = 844;

/// chromedriver and one Chromium session of a fresh profile.
pub(crate) struct Browser {
    driver: String,
    session: String,
    http: reqwest::Client,
    _chromedriver: Child,
    profile: PathBuf,
}

impl Browser {
    /// A session with JavaScript off; `phone` emulates the phone's viewport (whose emulated
    /// touch input chromedriver cannot click through, so clicks go to a plain window).
    pub(crate) async fn start(phone: bool) -> Browser {
        let port = free_port();
        let chromedriver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is installed (scripts/test installs chromium-driver)");
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        eventually("chromedriver is ready", secs(30), || async {
            match http.get(format!("{driver}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        let profile =
            std::env::temp_dir().join(format!("it-chromium-{:016x}", rand::random::<u64>()));
        let mut options = json!({
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        format!("--user-data-dir={}", profile.display()),
                        format!("--window-size={WIDTH},{HEIGHT}"),
                    ],
                    "prefs": {"profile.managed_default_content_settings.javascript": 2},
        });
        if phone {
            // A desktop window cannot be narrower than 500 pixels: the phone's viewport is
            // emulated, as DevTools' device mode does.
            options["mobileEmulation"] = json!({"deviceMetrics": {
                "width": WIDTH, "height": HEIGHT, "pixelRatio": 1.0,
            }});
        }
        let created: Value = http
            .post(format!("{driver}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            driver,
            session,
            http,
            _chromedriver: chromedriver,
            profile,
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.http.request(
            method,
            format!("{}/session/{}{path}", self.driver, self.session),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "{path}: {answer}");
        answer["value"].clone()
    }

    pub(crate) async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn dom(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn elements(&self, css: &str) -> Vec<String> {
        self.call(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap()
                .to_owned()
        })
        .collect()
    }

    /// The right edge of every element on the page, in CSS pixels: none may pass the viewport.
    async fn widest_right_edge(&self) -> f64 {
        let mut widest: f64 = 0.0;
        for element in self.elements("*").await {
            let rect = self
                .call(
                    reqwest::Method::GET,
                    &format!("/element/{element}/rect"),
                    None,
                )
                .await;
            widest = widest.max(rect["x"].as_f64().unwrap() + rect["width"].as_f64().unwrap());
        }
        widest
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.elements(css).await.into_iter().next().expect(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the first element matching `css`.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self.elements(css).await.into_iter().next().expect(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The screenshot's width and how many distinct colours it has.
    async fn screenshot(&self) -> (u32, usize) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let step = frame.color_type.samples();
        let colours: HashSet<&[u8]> = pixels[..frame.buffer_size()].chunks(step).collect();
        (frame.width, colours.len())
    }

    pub(crate) async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What every public page must be in the browser, and in its headers.
async fn check_page(browser: &Browser, url: &str, expect: &str) {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{url} sets a cookie"
    );
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{url}: CSP `{csp}`");
    assert!(
        !csp.contains("script-src"),
        "{url}: scripts allowed by `{csp}`"
    );

    browser.open(url).await;
    let dom = browser.dom().await;
    assert!(dom.contains(expect), "{url}: `{expect}` not in\n{dom}");
    assert!(dom.contains("name=\"viewport\""), "{url}: no meta viewport");
    assert!(
        !dom.contains("://"),
        "{url}: the DOM names a URL of another origin:\n{dom}"
    );
    let (width, colours) = browser.screenshot().await;
    assert_eq!(width, WIDTH, "{url}: screenshot width");
    assert!(colours > 1, "{url}: the screenshot is blank");
    let right = browser.widest_right_edge().await;
    assert!(
        right <= f64::from(WIDTH),
        "{url}: something reaches {right}px, past the {WIDTH}px viewport"
    );
    assert!(browser.cookies().await.is_empty(), "{url}: a cookie is set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_pages_render_without_javascript_on_a_phone_load_nothing_foreign_and_set_no_cookie()
{
    let mut h = Harness::new().await;
    let page = h.add_page("6101").await;
    let person = Person::in_window("Ann");
    h.seed(page, "6101", std::slice::from_ref(&person)).await;
    let subscriber: i64 = sqlx::query_scalar("SELECT id FROM subscribers")
        .fetch_one(h.pool())
        .await
        .unwrap();
    policy::publish(
        h.pool(),
        &NewVersion {
            version: "2026-12",
            summary: "First published version.",
            url: "https://moon.example/privacy",
        },
        h.settings.queue.max_attempts,
    )
    .await
    .unwrap();
    let code = {
        let mut conn = h.pool().acquire().await.unwrap();
        dsr::file(
            &mut conn,
            &h.keyring,
            DsrType::Erasure,
            Channel::Admin,
            &Subject {
                page_id: page,
                subscriber_id: None,
                psid: Some("1000000000000001".into()),
            },
            h.settings.queue.max_attempts,
        )
        .await
        .unwrap()
        .confirmation_code
    };
    let token = UnsubscribeSigner::new(&h.settings.unsubscribe)
        .unwrap()
        .sign(&UnsubscribeClaims {
            subscriber_id: subscriber,
            page_id: page,
            campaign_id: 0,
        });
    let web = h.start_web().await;
    let browser = Browser::start(true).await;

    // JavaScript really is off in this browser.
    browser
        .open("data:text/html,<title>off</title><script>document.title='on'</script>")
        .await;
    assert_eq!(browser.title().await, "off");

    check_page(
        &browser,
        &format!("{web}/privacy"),
        "Facebook (Meta) is the only processor",
    )
    .await;
    check_page(
        &browser,
        &format!("{web}/deletion-status?code={code}"),
        &format!("Confirmation code <strong>{code}</strong>"),
    )
    .await;
    check_page(&browser, &format!("{web}/u/{token}"), "Unsubscribe?").await;

    browser.call(reqwest::Method::DELETE, "", None).await;

    // The form posts and succeeds without JavaScript.
    let browser = Browser::start(false).await;
    browser.open(&format!("{web}/u/{token}")).await;
    browser.click("button[type=submit]").await;
    // The click starts a navigation; the answer page arrives when the server has answered.
    eventually("the unsubscribe answer page shows", secs(20), || async {
        browser.dom().await.contains("You are unsubscribed")
    })
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
        .bind(subscriber)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(status, "unsubscribed");
    let (_, colours) = browser.screenshot().await;
    assert!(colours > 1, "the confirmation is blank");
    assert!(browser.cookies().await.is_empty());
    assert_eq!(
        reqwest::get(format!("{web}/u/{token}"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    browser.call(reqwest::Method::DELETE, "", None).await;
}
