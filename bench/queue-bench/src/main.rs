//! `queue-bench`: the queue measured the way `shared/bench/peers` measures graphile-worker and
//! the others, so the figures sit side by side. On a fresh database: enqueue N no-op jobs with
//! the bulk call in calls of `ENQUEUE_BATCH`, then drain them through apalis on our backend
//! (`QB_WORKERS` registrations in one process, each with its own claimer), the clock stopping
//! when the last outcome is durable. `ANALYZE` and `CHECKPOINT` run before each phase.
//! Prints `peer=moonengage phase=enqueue|drain jobs=N seconds=S per_s=R`.

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

fn report(phase: &str, jobs: usize, seconds: f64) {
    println!(
        "peer=moonengage phase={phase} jobs={jobs} seconds={seconds:.3} per_s={:.0}",
        jobs as f64 / seconds
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = var("N", 100_000);
    let batch = var("ENQUEUE_BATCH", 1_000);
    let registrations = var("QB_WORKERS", 2);
    let mut settings = Settings::load()?;
    let url = db::recreate_database(
        &secrecy::ExposeSecret::expose_secret(&settings.database.url).to_owned(),
        "bench_moonengage",
    )
    .await?;
    settings.database.url = url.into();
    settings.database.max_connections = 20;
    let pool = db::connect(&settings.database)?;
    db::migrate(&pool).await.context("migrating")?;
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
