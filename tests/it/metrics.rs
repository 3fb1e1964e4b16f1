//! Metrics for admins: every metric the dashboards and alert rules name is one the code exports,
//! `promtool` accepts the rules and the scrape config, and a real Prometheus scraping a real run
//! (web, scheduler, two workers, a campaign with failures) has data for every panel and rule.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use moonengage_sandbox::{ErrorSpec, Faults, PsidFault, RandomFault};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{Harness, Person, Process, free_port, repo_root, wait_completed};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Where `$__rate_interval` and friends are substituted: long enough for a rate over 1 s
/// scrapes of a run that lasts seconds.
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "5m"),
];

fn grafana() -> PathBuf {
    repo_root().join("grafana")
}

/// Every `expr` of every panel of every dashboard, with where it comes from.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(value: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let title = map
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or(title)
                    .to_owned();
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Value::String(expr)) => out.push((title.clone(), expr.clone())),
                        _ => walk(child, &title, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, title, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(grafana().join("dashboards")).expect("grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            let json: Value = serde_json::from_str(&text).expect("dashboard is JSON");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            walk(&json, &name, &mut exprs);
            files += 1;
        }
    }
    assert!(files >= 3, "queues, sending and privacy dashboards");
    exprs
}

/// The `moonengage_*` names an expression (or any text) mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("moonengage_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn substitute(expr: &str) -> String {
    GRAFANA_VARIABLES
        .iter()
        .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

#[test]
fn every_metric_the_dashboards_and_alerts_name_is_one_the_code_exports() {
    let exported: BTreeSet<String> = moonengage_ops::metrics::names().into_iter().collect();
    let is_exported = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.contains(base))
            })
    };
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "the dashboards have panels: {exprs:?}");
    let mut named = BTreeSet::new();
    for (panel, expr) in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{panel}: `{expr}` names no moonengage_ metric"
        );
        named.extend(names);
    }
    let alerts = std::fs::read_to_string(grafana().join("alerts.yml")).expect("alerts.yml");
    named.extend(metric_names(&alerts));
    let unknown: Vec<_> = named.iter().filter(|n| !is_exported(n)).collect();
    assert!(unknown.is_empty(), "not exported by the code: {unknown:?}");
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_prometheus_config() {
    for args in [
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
    ] {
        let output = std::process::Command::new("promtool")
            .args(args)
            .current_dir(grafana())
            .output()
            .expect("promtool is installed (Debian package `prometheus`)");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A real Prometheus on a free port with its storage in a temporary folder; killed and
/// cleaned up when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Scrapes every second the given jobs (name → ports) and evaluates grafana/alerts.yml.
    async fn start(jobs: &[(&str, Vec<u16>)]) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: apt-get install prometheus"
        );
        let dir =
            std::env::temp_dir().join(format!("it-prometheus-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            grafana().join("alerts.yml").display()
        );
        for (job, ports) in jobs {
            let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let port = free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        eventually("Prometheus ready", Duration::from_secs(30), || async {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.url))
                .send();
            ready
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        })
        .await;
        prometheus
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["status"], "success", "{path} {query:?}: {answer}");
        answer["data"].clone()
    }

    /// The result of an instant query (a vector, or a scalar's `[time, value]`).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Retries `check` until it gives a value, failing the test after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The alert expression without its final threshold (`… > 300` → `…`), so a healthy run can
/// show the expression has data although the alert does not fire.
fn without_threshold(expr: &str) -> Option<&str> {
    let bytes = expr.as_bytes();
    let (mut parens, mut braces, mut quoted, mut last) = (0i32, 0i32, false, None);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            b'(' => parens += 1,
            b')' => parens -= 1,
            b'{' => braces += 1,
            b'}' => braces -= 1,
            b'>' | b'<' if parens == 0 && braces == 0 => last = Some(i),
            b'=' | b'!' if parens == 0 && braces == 0 && bytes.get(i + 1) == Some(&b'=') => {
                last = Some(i)
            }
            _ => {}
        }
    }
    let at = last?;
    let threshold = expr[at..].trim_start_matches(['>', '<', '=', '!']);
    threshold
        .chars()
        .all(|c| c.is_ascii_digit() || " .e*+-/()".contains(c))
        .then(|| expr[..at].trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_a_real_run_has_data_for_every_panel_and_alert_rule() {
    let h = Harness::new().await;
    // Page 9301: transient errors and rate limits (the Page pauses) on some first attempts,
    // three unreachable people, people outside their window. Page 9302: an invalid token, so it
    // is halted.
    let unreachable: Vec<Person> = (0..3)
        .map(|i| Person::in_window(&format!("U{i}")))
        .collect();
    h.sandbox.set_faults(Faults {
        random: vec![
            RandomFault {
                error: ErrorSpec::new(1200),
                rate: 0.1,
                first_attempt_only: true,
            },
            RandomFault {
                error: ErrorSpec::new(613),
                rate: 0.02,
                first_attempt_only: true,
            },
        ],
        by_psid: unreachable
            .iter()
            .map(|p| (p.psid.clone(), PsidFault::Error(ErrorSpec::new(551))))
            .collect(),
        by_page: HashMap::from([("9302".to_owned(), ErrorSpec::new(190).with_subcode(463))]),
        ..Faults::default()
    });
    let page = h.add_page("9301").await;
    let halted = h.add_page("9302").await;
    let mut people: Vec<Person> = (0..300)
        .map(|i| Person::in_window(&format!("P{i}")))
        .collect();
    people.extend((0..20).map(|i| Person::outside_window(&format!("O{i}"))));
    people.extend(unreachable);
    h.seed(page, "9301", &people).await;
    h.seed(
        halted,
        "9302",
        &[Person::in_window("H0"), Person::in_window("H1")],
    )
    .await;

    let ports: HashMap<&str, Vec<u16>> = HashMap::from([
        ("web", vec![free_port()]),
        ("worker", vec![free_port(), free_port()]),
        ("scheduler", vec![free_port()]),
    ]);
    let mut processes = Vec::new();
    for (binary, binary_ports) in &ports {
        for port in binary_ports {
            let mut env = h.process_env();
            env.extend(
                [
                    ("PORT", port.to_string()),
                    ("MOONENGAGE__METRICS__REFRESH_MS", "500".into()),
                    ("MOONENGAGE__RATE_LIMIT__PAUSE_SECS", "1".into()),
                    ("MOONENGAGE__QUEUE__RETRY_BASE_MS", "100".into()),
                    ("MOONENGAGE__QUEUE__RETRY_MAX_MS", "1000".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            processes.push(Process::start(binary, &env));
        }
    }
    let jobs: Vec<(&str, Vec<u16>)> = ports.iter().map(|(k, v)| (*k, v.clone())).collect();
    let prometheus = Prometheus::start(&jobs).await;
    eventually("every target up", Duration::from_secs(60), || async {
        let targets = prometheus.api("targets", &[]).await;
        let active = targets["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (active.len() == 4 && active.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;

    let campaign = h
        .campaign(page, "Hello {{first_name default=\"there\"}}")
        .await;
    h.campaign(halted, "Hello {{first_name default=\"there\"}}")
        .await;
    let done = wait_completed(h.pool(), h.workspace_id, campaign, Duration::from_secs(120)).await;
    assert_eq!((done.sent, done.failed, done.skipped), (300, 3, 20));

    // Every panel's expression has data once the final state is scraped.
    let exprs = dashboard_exprs();
    let started = Instant::now();
    loop {
        let mut empty = Vec::new();
        for (panel, expr) in &exprs {
            if prometheus.query(&substitute(expr)).await.is_empty() {
                empty.push(format!("{panel}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no data for {} panel expressions: {empty:#?}",
            empty.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every alert rule, as Prometheus loaded it from grafana/alerts.yml, evaluates without error
    // and has data once its threshold is removed (a healthy run fires none of them).
    let groups = prometheus.api("rules", &[("type", "alert")]).await["groups"].clone();
    let rules: Vec<Value> = groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), 6, "the six alert rules are loaded: {groups}");
    for rule in &rules {
        let (name, query) = (
            rule["name"].as_str().unwrap(),
            rule["query"].as_str().unwrap(),
        );
        assert_ne!(rule["health"], "err", "{name}: {rule}");
        let base =
            without_threshold(query).unwrap_or_else(|| panic!("{name}: no threshold in `{query}`"));
        assert!(
            !prometheus.query(base).await.is_empty(),
            "{name}: `{base}` has no data"
        );
    }
    prometheus.stop().await;
    drop(processes);
}
