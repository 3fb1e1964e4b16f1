//! The chaos run of `bench/chaos` at 10,000 people: a honcho formation (web, 2 schedulers,
//! 3 workers, sandbox) sends one campaign on 4 Pages while workers are SIGKILLed every 2 s,
//! Postgres restarts, Redis is down for 10 s, the sandbox fails 30% of sends and swallows the
//! answers of 1% of people, and people send STOP and "delete my data". The script decides:
//! no duplicate, nothing lost, every STOP and erasure honoured, every campaign completed.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{Harness, bin_dir, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_people_through_kills_restarts_and_outages_get_one_message_each() {
    // A turn on the machine like any harness, so the tests that time a Page's busiest second
    // (which run alone) never share it with this one.
    let _turn = Harness::new().await;
    let run = Command::new(repo_root().join("bench/chaos"))
        .arg("10000")
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
    for line in [
        "| duplicates | 0 |",
        "| lost | 0 |",
        "| STOPs honoured | 50/50 |",
        "| erasures completed | 20/20 |",
        "| campaigns completed | 4/4 |",
    ] {
        assert!(table.contains(line), "missing `{line}` in\n{table}");
    }
    println!("{table}");
}
