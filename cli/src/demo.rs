//! `moonengage demo`: the whole system on this machine — sandbox, web, scheduler and workers as
//! real processes on a fresh local database — sending a campaign to 10,000 demo subscribers on
//! three Pages, with live progress and a summary. It stops everything it started.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use moonengage_core::campaigns::{self, CampaignState};
use moonengage_core::db;
use moonengage_core::pages::{self, NewPage};
use moonengage_core::settings::Settings;
use moonengage_privacy::crypto::Keyring;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::admin;

/// Seeded per Page besides the recipients: people whose window closed, and who unsubscribed.
const OUTSIDE_WINDOW: usize = 100;
const UNSUBSCRIBED: usize = 50;
const INELIGIBLE_PER_PAGE: usize = OUTSIDE_WINDOW + UNSUBSCRIBED;

/// Options of the demo.
#[derive(Args)]
pub struct DemoArgs {
    /// Recipients inside their window, spread over the Pages.
    #[arg(long, default_value_t = 10_000)]
    recipients: usize,
    /// Pages to send from.
    #[arg(long, default_value_t = 3)]
    pages: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Sandbox answer delay in milliseconds (Facebook answers in ~100 ms).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Messages per second each Page may send (at most Facebook's 300; to measure the pipeline
    /// itself rather than Facebook's limit, spread the recipients over more Pages, as bench/run
    /// does).
    #[arg(long, default_value_t = 250)]
    send_rate: i32,
    /// The database the demo re-creates for itself.
    #[arg(long, default_value = "moonengage_demo")]
    database: String,
}

/// Runs the demo end to end.
pub async fn run(settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    let url = SecretString::from(
        db::recreate_database(settings.database.url.expose_secret(), &args.database).await?,
    );
    let pool = PgPool::connect(url.expose_secret()).await?;
    db::migrate(&pool).await?;
    println!("database {} ready", args.database);

    let mut children = Children::default();
    let result = demo(&settings, &args, &url, &pool, &mut children).await;
    children.stop().await;
    result
}

/// The demo workspace's owner: a reserved example address, nobody's mailbox.
const DEMO_OWNER: &str = "owner@mooncafe.example";

async fn demo(
    settings: &Settings,
    args: &DemoArgs,
    url: &SecretString,
    pool: &PgPool,
    children: &mut Children,
) -> anyhow::Result<()> {
    let sandbox_port = free_port()?;
    children
        .spawn(
            "sandbox",
            &[
                ("PORT", sandbox_port.to_string()),
                ("RUST_LOG", "warn".into()),
            ],
            &[
                "--latency-ms",
                &args.latency_ms.to_string(),
                "--rate-limit",
                "0",
            ],
        )
        .await?;
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    let web_port = free_port()?;
    let env = |extra: &[(&'static str, String)]| {
        let mut env: Vec<(&'static str, String)> = vec![
            ("DATABASE_URL", url.expose_secret().to_owned()),
            ("MOONENGAGE__MESSENGER__BASE_URL", sandbox.clone()),
            ("RUST_LOG", "warn".into()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    children
        .spawn("web", &env(&[("PORT", web_port.to_string())]), &[])
        .await?;
    children.spawn("scheduler", &env(&[]), &[]).await?;
    for _ in 0..args.workers {
        children.spawn("worker", &env(&[]), &[]).await?;
    }
    println!(
        "started sandbox, web (port {web_port}), scheduler and {} workers",
        args.workers
    );

    let keyring = Keyring::load_or_create(pool, &settings.crypto).await?;
    let workspace =
        moonengage_accounts::workspaces::create(pool, "Moon Cafe (demo)", DEMO_OWNER).await?;
    let mut campaign_ids = Vec::new();
    for index in 0..args.pages {
        let fb_page_id = format!("10{index:013}");
        let page_id = pages::register(
            pool,
            &keyring,
            &NewPage {
                workspace_id: workspace.workspace_id,
                fb_page_id: &fb_page_id,
                name: &format!("Moon Cafe #{}", index + 1),
                access_token: &SecretString::from(format!("sandbox-token-{fb_page_id}")),
                send_rate: args.send_rate,
            },
        )
        .await?;
        let share =
            args.recipients / args.pages + usize::from(index < args.recipients % args.pages);
        let page = admin::Scoped {
            workspace_id: workspace.workspace_id,
            page_id,
        };
        admin::seed(pool, &keyring, page, share, OUTSIDE_WINDOW, UNSUBSCRIBED).await?;
        let id = campaigns::create(
            pool,
            &campaigns::NewCampaign {
                workspace_id: workspace.workspace_id,
                page_id,
                name: "Demo: spring menu",
                template: "Hi {{first_name default=\"there\"}}! {{page_name}} has a new spring menu. Reply to this message to book a table.",
            },
        )
        .await?;
        campaign_ids.push(id);
    }
    println!(
        "seeded {} recipients in their window (and {} ineligible) on {} Pages",
        args.recipients,
        args.pages * INELIGIBLE_PER_PAGE,
        args.pages
    );

    let started = Instant::now();
    for id in &campaign_ids {
        campaigns::schedule(pool, workspace.workspace_id, *id, Utc::now()).await?;
    }
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} recipients {msg}",
        )?
        .progress_chars("=> "),
    );
    let mut fanned_out = None;
    let summary = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut summary = Summary::default();
        for id in &campaign_ids {
            let progress = campaigns::progress(pool, workspace.workspace_id, *id)
                .await?
                .context("a demo campaign vanished")?;
            summary.add(&progress);
        }
        bar.set_length(summary.recipients.max(1) as u64);
        bar.set_position(summary.finished() as u64);
        bar.set_message(format!(
            "({:.0} msg/s)",
            summary.sent as f64 / started.elapsed().as_secs_f64()
        ));
        if fanned_out.is_none() && summary.fanned_out == campaign_ids.len() {
            fanned_out = Some(started.elapsed());
        }
        if summary.completed == campaign_ids.len() {
            break summary;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the demo campaign did not complete within 10 minutes");
        }
        children.check()?;
    };
    bar.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let memory = children.peak_memory("worker");
    let received = sandbox_received(&sandbox).await?;
    println!();
    println!("campaign completed in {elapsed:.1} s");
    println!("  sent     {:>7}", summary.sent);
    println!(
        "  skipped  {:>7}  (outside the 24-hour window or unsubscribed)",
        summary.skipped
    );
    println!("  failed   {:>7}", summary.failed);
    println!("  unknown  {:>7}", summary.unknown);
    println!(
        "  throughput {:.0} messages/s",
        summary.sent as f64 / elapsed
    );
    if let Some(fanned_out) = fanned_out {
        println!(
            "  fan-out of every campaign done after {:.2} s",
            fanned_out.as_secs_f64()
        );
    }
    for (index, kib) in memory.iter().enumerate() {
        println!(
            "  worker {} peak memory {:.1} MiB",
            index + 1,
            *kib as f64 / 1024.0
        );
    }
    println!("  sandbox received {received} messages");
    if received != summary.sent {
        bail!(
            "the sandbox received {received} messages but {} were recorded sent",
            summary.sent
        );
    }
    Ok(())
}

#[derive(Default)]
struct Summary {
    recipients: i64,
    sent: i64,
    skipped: i64,
    failed: i64,
    unknown: i64,
    completed: usize,
    fanned_out: usize,
}

impl Summary {
    fn add(&mut self, progress: &campaigns::Progress) {
        self.recipients += progress.recipients;
        self.sent += progress.sent;
        self.skipped += progress.skipped;
        self.failed += progress.failed;
        self.unknown += progress.unknown;
        self.completed += usize::from(progress.state == CampaignState::Completed);
        self.fanned_out += usize::from(progress.fanout_done);
    }

    fn finished(&self) -> i64 {
        self.sent + self.skipped + self.failed + self.unknown
    }
}

async fn sandbox_received(base: &str) -> anyhow::Result<i64> {
    let stats: serde_json::Value = reqwest::get(format!("{base}/_sandbox/stats"))
        .await?
        .json()
        .await?;
    stats["received_total"]
        .as_i64()
        .context("sandbox stats without received_total")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The processes the demo started, stopped with SIGTERM (as a Procfile runner would) at the end.
#[derive(Default)]
struct Children {
    running: Vec<(String, Child)>,
}

impl Children {
    async fn spawn(
        &mut self,
        binary: &str,
        env: &[(&str, String)],
        args: &[&str],
    ) -> anyhow::Result<()> {
        let path = sibling_binary(binary)?;
        let mut command = Command::new(&path);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        if let Some(stdout) = child.stdout.take() {
            let name = binary.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if name != "sandbox" {
                        eprintln!("[{name}] {line}");
                    }
                }
            });
        }
        self.running.push((binary.to_owned(), child));
        Ok(())
    }

    /// Peak resident memory (KiB) of each running process of one kind, from /proc.
    fn peak_memory(&self, binary: &str) -> Vec<u64> {
        self.running
            .iter()
            .filter(|(name, _)| name == binary)
            .filter_map(|(_, child)| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", child.id()?)).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .collect()
    }

    /// Fails when a process died under the demo.
    fn check(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.running {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited unexpectedly ({status})");
            }
        }
        Ok(())
    }

    async fn stop(&mut self) {
        for (_, child) in &self.running {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for (name, child) in &mut self.running {
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                eprintln!("{name} did not stop in 15 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the demo binary has no folder")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace first (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}
