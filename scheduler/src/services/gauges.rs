//! The gauges service: gauges computed from Postgres — queue depth by state, the oldest due job,
//! live and busy workers, Pages, campaign progress, open data-subject requests, the incident
//! report deadline — so they are right however many workers run. Only the scheduler leader
//! publishes them, every `metrics.refresh_ms`; a standby publishes nothing. The families
//! themselves are defined in `moonengage_ops::metrics`, with every other metric.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::jobs::QUEUES;
use moonengage_core::settings::Settings;
use moonengage_ops::metrics::{DSR_TYPES, families};
use moonengage_privacy::incidents::REPORT_DEADLINE_HOURS;
use moonengage_queue::stats;
use prometheus::GaugeVec;
use sqlx::PgPool;

use super::Service;

/// Job states the dashboards show, each with a series per queue even when empty.
const JOB_STATES: &[&str] = &[
    "pending",
    "scheduled",
    "queued",
    "running",
    "done",
    "failed",
    "dead",
    "killed",
];

/// A finished campaign keeps its progress series this long, so the dashboard shows how it
/// ended.
const FINISHED_CAMPAIGN_VISIBLE: &str = "1 hour";

/// One gauge family published from a query: label sets that disappear from the answer are
/// removed, except the known ones, which fall back to 0.
struct Published {
    vec: GaugeVec,
    known: Vec<Vec<String>>,
    last: HashSet<Vec<String>>,
}

impl Published {
    fn new(vec: &GaugeVec, known: Vec<Vec<String>>) -> Published {
        Published {
            vec: vec.clone(),
            known,
            last: HashSet::new(),
        }
    }

    fn publish(&mut self, rows: Vec<(Vec<String>, f64)>) {
        let mut now: HashSet<Vec<String>> = HashSet::new();
        for labels in &self.known {
            if !rows.iter().any(|(l, _)| l == labels) {
                self.vec.with_label_values(labels).set(0.0);
            }
            now.insert(labels.clone());
        }
        for (labels, value) in rows {
            self.vec.with_label_values(&labels).set(value);
            now.insert(labels);
        }
        for gone in self.last.difference(&now) {
            let _ = self.vec.remove_label_values(gone);
        }
        self.last = now;
    }
}

/// Recomputes the database gauges every `metrics.refresh_ms` while this scheduler leads.
pub struct Gauges {
    every: Duration,
    worker_alive_within: Duration,
    queue_jobs: Published,
    oldest_ready: Published,
    workers_alive: Published,
    workers_busy: Published,
    page_rate_limit: Published,
    page_paused: Published,
    page_halted: Published,
    campaign_recipients: Published,
    campaign_sent: Published,
    campaign_finished: Published,
    dsr_open: Published,
    dsr_oldest_open: Published,
}

fn labels(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn each(values: &[&str]) -> Vec<Vec<String>> {
    values.iter().map(|v| labels(&[v])).collect()
}

impl Gauges {
    /// Every `metrics.refresh_ms`; a worker silent for longer than a lease (its heartbeat times
    /// the missed heartbeats allowed) no longer counts as alive.
    pub fn new(settings: &Settings) -> Gauges {
        let f = families();
        let queue_states = QUEUES
            .iter()
            .flat_map(|q| JOB_STATES.iter().map(move |s| labels(&[q, s])))
            .collect();
        Gauges {
            every: Duration::from_millis(settings.metrics.refresh_ms),
            worker_alive_within: settings.queue.lease(),
            queue_jobs: Published::new(&f.queue_jobs, queue_states),
            oldest_ready: Published::new(&f.queue_oldest_ready, each(QUEUES)),
            workers_alive: Published::new(&f.workers_alive, each(QUEUES)),
            workers_busy: Published::new(&f.workers_busy, each(QUEUES)),
            page_rate_limit: Published::new(&f.page_rate_limit, Vec::new()),
            page_paused: Published::new(&f.page_paused, Vec::new()),
            page_halted: Published::new(&f.page_halted, Vec::new()),
            campaign_recipients: Published::new(&f.campaign_recipients, Vec::new()),
            campaign_sent: Published::new(&f.campaign_sent, Vec::new()),
            campaign_finished: Published::new(&f.campaign_finished, Vec::new()),
            dsr_open: Published::new(&f.dsr_open, each(DSR_TYPES)),
            dsr_oldest_open: Published::new(&f.dsr_oldest_open, each(DSR_TYPES)),
        }
    }
}

impl Service for Gauges {
    const NAME: &'static str = "gauges";

    fn interval(&self) -> Duration {
        self.every
    }

    async fn run_once(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        families().leader.with_label_values(&[] as &[&str]).set(1.0);
        self.refresh_queue(pool).await?;
        self.refresh_pages(pool).await?;
        self.refresh_campaigns(pool).await?;
        self.refresh_dsr(pool).await?;
        self.refresh_incidents(pool).await
    }

    /// Leadership ended: the next leader publishes, so this one withdraws what it published.
    fn stopped(&mut self) {
        withdraw();
    }
}

/// Publishes "not the leader" and removes every series of the leader's gauges.
pub fn withdraw() {
    let f = families();
    f.leader.with_label_values(&[] as &[&str]).set(0.0);
    for vec in [
        &f.queue_jobs,
        &f.queue_oldest_ready,
        &f.workers_alive,
        &f.workers_busy,
        &f.page_rate_limit,
        &f.page_paused,
        &f.page_halted,
        &f.campaign_recipients,
        &f.campaign_sent,
        &f.campaign_finished,
        &f.dsr_open,
        &f.dsr_oldest_open,
        &f.incident_deadline,
    ] {
        vec.reset();
    }
}

impl Gauges {
    async fn refresh_queue(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let by_state = stats::depth(pool)
            .await
            .context("counting jobs by queue and state")?;
        self.queue_jobs.publish(
            by_state
                .into_iter()
                .map(|(q, s, n)| (vec![q, s], n as f64))
                .collect(),
        );
        let oldest = stats::oldest_due(pool)
            .await
            .context("finding the oldest due job")?;
        self.oldest_ready.publish(by_queue(oldest));
        let alive = stats::workers_alive(pool, self.worker_alive_within)
            .await
            .context("counting live workers")?;
        self.workers_alive.publish(by_queue(alive));
        let busy = stats::workers_busy(pool)
            .await
            .context("counting busy workers")?;
        self.workers_busy.publish(by_queue(busy));
        Ok(())
    }

    async fn refresh_pages(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let pages: Vec<(i64, i32, bool, bool)> = sqlx::query_as(
            "SELECT id, send_rate, coalesce(paused_until > now(), false), status = 'halted'
             FROM pages",
        )
        .fetch_all(pool)
        .await
        .context("reading Pages")?;
        let page = |id: i64| vec![id.to_string()];
        self.page_rate_limit.publish(
            pages
                .iter()
                .map(|(id, rate, ..)| (page(*id), f64::from(*rate)))
                .collect(),
        );
        self.page_paused.publish(
            pages
                .iter()
                .map(|(id, _, paused, _)| (page(*id), f64::from(u8::from(*paused))))
                .collect(),
        );
        self.page_halted.publish(
            pages
                .iter()
                .map(|(id, _, _, halted)| (page(*id), f64::from(u8::from(*halted))))
                .collect(),
        );
        Ok(())
    }

    async fn refresh_campaigns(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, page_id, recipients::bigint, sent::bigint,
                    (sent + skipped + failed + unknown)::bigint
             FROM campaign_totals
             WHERE state IN ('running', 'paused')
                OR completed_at > now() - interval '{FINISHED_CAMPAIGN_VISIBLE}'"
        )))
        .fetch_all(pool)
        .await
        .context("reading campaign progress")?;
        let series = |pick: fn(&(i64, i64, i64, i64, i64)) -> i64| {
            rows.iter()
                .map(|row| {
                    let labels = vec![row.0.to_string(), row.1.to_string()];
                    (labels, pick(row) as f64)
                })
                .collect::<Vec<_>>()
        };
        self.campaign_recipients.publish(series(|r| r.2));
        self.campaign_sent.publish(series(|r| r.3));
        self.campaign_finished.publish(series(|r| r.4));
        Ok(())
    }

    async fn refresh_dsr(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT type, count(*), extract(epoch FROM now() - min(received_at))::float8
             FROM dsr_requests WHERE status IN ('received', 'processing') GROUP BY 1",
        )
        .fetch_all(pool)
        .await
        .context("counting open data-subject requests")?;
        self.dsr_open.publish(
            rows.iter()
                .map(|(kind, n, _)| (vec![kind.clone()], *n as f64))
                .collect(),
        );
        self.dsr_oldest_open.publish(
            rows.into_iter()
                .map(|(kind, _, age)| (vec![kind], age))
                .collect(),
        );
        Ok(())
    }

    async fn refresh_incidents(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        let left: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM min(detected_at) + make_interval(hours => $1) - now())::float8
             FROM incidents WHERE status = 'open'",
        )
        .bind(i32::try_from(REPORT_DEADLINE_HOURS).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await
        .context("finding the earliest incident report deadline")?;
        families()
            .incident_deadline
            .with_label_values(&[] as &[&str])
            .set(left.unwrap_or(f64::INFINITY));
        Ok(())
    }
}

/// Rows keyed by queue name as gauge series.
fn by_queue(rows: Vec<(String, f64)>) -> Vec<(Vec<String>, f64)> {
    rows.into_iter()
        .map(|(queue, value)| (vec![queue], value))
        .collect()
}
