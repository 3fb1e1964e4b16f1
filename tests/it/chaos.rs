//! The chaos run of `bench/chaos` at 10,000 people: a honcho formation (web, 2 schedulers,
//! 3 workers, sandbox) sends one campaign on 4 Pages while workers are SIGKILLed every 2 s,
//! Postgres restarts, Redis is down for 10 s, the sandbox fails 30% of sends and swallows the
//! answers of 1% of people, and people send STOP and "delete my data". The script decides:
//! no duplicate, nothing lost, every STOP and erasure honoured, every campaign completed. And
//! the formation behind PgBouncer in transaction mode, calm.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{Harness, bin_dir, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_people_through_kills_restarts_and_outages_get_one_message_each() {
    let table = chaos(&["10000"]).await;
    for line in [
        "| duplicates | 0 |",
        "| lost | 0 |",
        "| STOPs honoured | 50/50 |",
        "| erasures completed | 20/20 |",
        "| campaigns completed | 4/4 |",
    ] {
        assert!(table.contains(line), "missing `{line}` in\n{table}");
    }
}

/// Eight workers (and the web and two schedulers) through Debian's PgBouncer in transaction
/// mode, as ops scale a formation behind a pooler: every person gets one message, STOPs and
/// erasures are honoured, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formation_of_eight_workers_behind_pgbouncer_in_transaction_mode_sends_once_each() {
    let table = chaos(&["3000", "--pgbouncer", "--workers", "8", "--calm"]).await;
    for line in [
        "| through PgBouncer (transaction mode) | yes |",
        "| duplicates | 0 |",
        "| lost | 0 |",
        "| unknown | 0 |",
        "| failed | 0 |",
        "| STOPs honoured | 50/50 |",
        "| erasures completed | 20/20 |",
        "| campaigns completed | 4/4 |",
    ] {
        assert!(table.contains(line), "missing `{line}` in\n{table}");
    }
}

/// One chaos run at a time: two formations on the machine's two cores would mostly measure
/// each other.
static ONE_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `bench/chaos` with the test binaries and returns its table, which must say PASS.
async fn chaos(args: &[&str]) -> String {
    let _one = ONE_RUN.lock().await;
    // A turn on the machine like any harness, so the tests that time a Page's busiest second
    // (which run alone) never share it with this one.
    let _turn = Harness::new().await;
    let run = Command::new(repo_root().join("bench/chaos"))
        .args(args)
        .env("MOONENGAGE_BIN", bin_dir())
        .env("CHAOS_NO_BUILD", "1")
        .env("CHAOS_TIMEOUT_SECS", "900")
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(1_000), run)
        .await
        .expect("the chaos run ends")
        .expect("bench/chaos runs");
    let table = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && table.contains("PASS"),
        "{table}\n{log}"
    );
    println!("{table}");
    table.into_owned()
}
