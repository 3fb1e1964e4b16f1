//! Alerts the leader raises by looking at the data: a data-subject request close to its deadline,
//! and an incident close to its 72 hours to inform the authority, are announced to admins, once
//! (the row records that it was), every few minutes at most — the deadlines are hours or days
//! away, so checking each tick would only load the database.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use moonengage_core::settings::EmailSettings;
use moonengage_ops::alerts::{self, AdminEvent};
use moonengage_privacy::incidents;
use sqlx::PgPool;

/// When the leader last looked for requests due soon.
#[derive(Debug)]
pub struct DueSoon {
    every: Duration,
    within_days: i32,
    incident_within_hours: i32,
    last: Mutex<Option<Instant>>,
}

impl DueSoon {
    /// A check every `email.dsr_due_check_secs` for requests due within
    /// `email.dsr_due_within_days`.
    pub fn new(settings: &EmailSettings) -> DueSoon {
        DueSoon {
            every: Duration::from_secs(settings.dsr_due_check_secs),
            within_days: settings.dsr_due_within_days,
            incident_within_hours: settings.incident_deadline_within_hours,
            last: Mutex::new(None),
        }
    }

    /// Runs the check when it is time; returns the requests and the incidents announced.
    pub async fn check(&self, pool: &PgPool) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.every) {
                return Ok((Vec::new(), Vec::new()));
            }
            *last = Some(Instant::now());
        }
        let requests = announce_due_soon(pool, self.within_days).await?;
        let incidents = incidents::announce_deadline_near(pool, self.incident_within_hours).await?;
        Ok((requests, incidents))
    }
}

/// Marks every open request due within `days` that was not announced yet, and queues the admin
/// e-mail of each, in one transaction: a crash cannot announce one twice or lose one.
async fn announce_due_soon(pool: &PgPool, days: i32) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool.begin().await.context("starting the due-soon check")?;
    let due: Vec<i64> = sqlx::query_scalar(
        "UPDATE dsr_requests SET due_soon_notified_at = now()
         WHERE status IN ('received', 'processing') AND due_soon_notified_at IS NULL
           AND due_at < now() + make_interval(days => $1)
         RETURNING id",
    )
    .bind(days)
    .fetch_all(&mut *tx)
    .await
    .context("finding requests due soon")?;
    for &request_id in &due {
        alerts::admin(&mut *tx, AdminEvent::DsrDueSoon { request_id }).await?;
    }
    tx.commit().await.context("committing the due-soon check")?;
    Ok(due)
}
