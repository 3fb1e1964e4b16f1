//! `queue-bench`: the queue measured the way `shared/bench/peers` measures graphile-worker and
//! the others, so the figures sit side by side. On a fresh database: enqueue N no-op jobs with
//! the bulk call in calls of `ENQUEUE_BATCH`, then drain them through apalis on our backend
//! (`QB_WORKERS` registrations in one process, each with its own claimer), the clock stopping
//! when the last outcome is durable. `ANALYZE` and `CHECKPOINT` run before each phase.
//! Prints `peer=moonengage phase=enqueue|drain jobs=N seconds=S per_s=R`.
//!
//! `queue-bench fanout` measures the send queue instead: one Page with `N` eligible people
//! (and 1% who are not), a campaign fanned out into queued deliveries by the scheduler's own
//! statement in batches of `scheduler.fanout_batch`, then the erasure of one person while
//! they all wait. Prints `phase=fanout recipients=N seconds=S per_s=R` and
//! `phase=erase_one queued=N ms=M`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apalis::prelude::*;
use moonengage_core::db;
use moonengage_core::settings::Settings;
use moonengage_queue::backend::QueueBackend;
use moonengage_queue::jobs::{self, Jobs};
use moonengage_queue::run::{self, Acks, Run};
use moonengage_queue::sends;
use moonengage_queue::wake::Wakers;
use moonengage_queue::{Job, JobError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A job that does nothing: what is measured is the queue.
#[derive(Clone, Serialize, Deserialize)]
struct Noop {
    n: u64,
}

impl Job for Noop {
    const KIND: &'static str = "noop";

    fn key(&self) -> String {
        self.n.to_string()
    }
}

/// Counts finished jobs and says when the last one is in.
struct Tally {
    done: AtomicUsize,
    target: usize,
    all_done: Notify,
}

impl Run<Tally> for Noop {
    async fn run(self, tally: &Tally) -> Result<(), JobError> {
        let _ = self.n;
        // Counted when it finishes; its outcome is durable once `execute` returns, which the
        // drain waits for by waiting for the rows (below).
        if tally.done.fetch_add(1, Ordering::Relaxed) + 1 == tally.target {
            tally.all_done.notify_one();
        }
        Ok(())
    }
}

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn prepare(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query("ANALYZE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// A fresh migrated database and the settings pointing at it.
async fn fresh() -> anyhow::Result<(Settings, sqlx::PgPool)> {
    let mut settings = Settings::load()?;
    let url = db::recreate_database(
        secrecy::ExposeSecret::expose_secret(&settings.database.url),
        "bench_moonengage",
    )
    .await?;
    settings.database.url = url.into();
    settings.database.max_connections = 20;
    let pool = db::connect(&settings.database)?;
    db::migrate(&pool).await.context("migrating")?;
    Ok((settings, pool))
}

/// The fan-out of a campaign to `N` people, and erasing one of them while all are queued.
async fn fanout() -> anyhow::Result<()> {
    let n = var("N", 1_000_000);
    let (settings, pool) = fresh().await?;
    // People are made in SQL: fan-out reads ids, status and window, never the sealed values.
    sqlx::query(
        "WITH workspace AS (
             INSERT INTO workspaces (name) VALUES ('bench') RETURNING id
         ), page AS (
             INSERT INTO pages (workspace_id, fb_page_id, name, access_token, send_rate)
             SELECT id, 'bench', 'Bench', '\\x00', 250 FROM workspace RETURNING id, workspace_id
         )
         INSERT INTO subscribers (workspace_id, page_id, psid_index, psid, status, opted_in_at,
                                  consent_source, last_interaction_at)
         SELECT page.workspace_id, page.id, int8send(g), '\\x00', 'active', now(), 'bench',
                now() - CASE WHEN g % 100 = 0 THEN interval '2 days' ELSE interval '1 hour' END
         FROM page, generate_series(1, $1) g",
    )
    .bind(i64::try_from(n)?)
    .execute(&pool)
    .await
    .context("seeding people")?;
    let campaign: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (page_id, name, template, state, started_at)
         SELECT id, 'bench', 'Hi', 'running', now() FROM pages RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    prepare(&pool).await?;
    let started = Instant::now();
    let mut cursor = 0;
    while !sends::fan_out(
        &pool,
        campaign,
        cursor,
        settings.scheduler.fanout_batch,
        settings.scheduler.pace_fanout,
    )
    .await?
    {
        cursor = sqlx::query_scalar("SELECT fanout_cursor FROM campaigns WHERE id = $1")
            .bind(campaign)
            .fetch_one(&pool)
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (recipients, queued): (i32, i64) = sqlx::query_as(
        "SELECT recipients, (SELECT count(*) FROM deliveries WHERE status = 'queued')
         FROM campaigns WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(recipients as usize == n, "fanned out {recipients} of {n}");
    println!(
        "peer=moonengage phase=fanout recipients={n} seconds={seconds:.3} per_s={:.0}",
        n as f64 / seconds
    );
    prepare(&pool).await?;
    let mut tx = pool.begin().await?;
    let started = Instant::now();
    let erased = sends::erase(&mut tx, i64::try_from(n / 2)?).await?;
    let ms = started.elapsed().as_secs_f64() * 1_000.0;
    tx.rollback().await?;
    anyhow::ensure!(erased == 1, "erased {erased} deliveries");
    println!("peer=moonengage phase=erase_one queued={queued} ms={ms:.1}");
    Ok(())
}

fn report(phase: &str, jobs: usize, seconds: f64) {
    println!(
        "peer=moonengage phase={phase} jobs={jobs} seconds={seconds:.3} per_s={:.0}",
        jobs as f64 / seconds
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("fanout") {
        return fanout().await;
    }
    let n = var("N", 100_000);
    let batch = var("ENQUEUE_BATCH", 1_000);
    let registrations = var("QB_WORKERS", 2);
    let (settings, pool) = fresh().await?;
    let queue = settings.queue.clone();

    prepare(&pool).await?;
    let all: Vec<Noop> = (0..n as u64).map(|n| Noop { n }).collect();
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    for chunk in all.chunks(batch.max(1)) {
        jobs::enqueue_many(&mut conn, chunk, Duration::ZERO, 1).await?;
    }
    report("enqueue", n, started.elapsed().as_secs_f64());

    prepare(&pool).await?;
    let tally = Arc::new(Tally {
        done: AtomicUsize::new(0),
        target: n,
        all_done: Notify::new(),
    });
    let wakers = Wakers::default();
    let mut monitor = Monitor::new();
    for i in 0..registrations {
        let (pool, queue, tally, wakers) =
            (pool.clone(), queue.clone(), tally.clone(), wakers.clone());
        monitor = monitor.register(move |_| {
            let jobs = Jobs::<Noop>::new(pool.clone(), format!("bench-{i}"), queue.lease());
            let acks = Acks::start(&jobs, &queue);
            WorkerBuilder::new(format!("bench-{i}"))
                .backend(QueueBackend::new(
                    jobs,
                    wakers.of(Noop::KIND),
                    queue.batch_size,
                    Duration::from_millis(queue.poll_interval_ms),
                ))
                .data(tally.clone())
                .data(acks)
                .concurrency(queue.batch_size)
                .build(run::execute::<Noop, Tally>)
        });
    }
    let started = Instant::now();
    let stop = Arc::new(Notify::new());
    let stopping = stop.clone();
    let running = tokio::spawn(monitor.run_with_signal(async move {
        stopping.notified().await;
        Ok(())
    }));
    tally.all_done.notified().await;
    // The last handler counted itself before its outcome was written: wait until every row
    // is acknowledged (a job that succeeds is deleted).
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&pool)
            .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    report("drain", n, started.elapsed().as_secs_f64());
    stop.notify_one();
    running.await??;
    anyhow::ensure!(
        tally.done.load(Ordering::Relaxed) == n,
        "ran {} jobs, expected {n}",
        tally.done.load(Ordering::Relaxed)
    );
    Ok(())
}
