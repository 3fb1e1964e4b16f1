//! Retention (DESIGN: privacy by design), enforced by the leader: jobs failed for good, what is left
//! of processed webhook events, delivery rows of campaigns that ended long ago, subscribers
//! inactive for long and unsubscribed people (keeping only a blind index of the latter), expired
//! exports and the subject of completed data-subject requests: nothing else deletes them once
//! their purpose is served.
//!
//! A pass runs every `retention.interval_ms`, not every tick. Every statement deletes at most
//! [`BATCH`] rows (short locks, small transactions); a pass stops each rule after
//! [`BATCHES_PER_PASS`] and runs again at the next tick while a backlog remains.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use moonengage_core::settings::RetentionSettings;
use sqlx::{AssertSqlSafe, PgPool};

/// Rows deleted per statement.
const BATCH: i64 = 10_000;
/// Statements per rule per pass, so a pass never keeps the leader from fanning out for long.
const BATCHES_PER_PASS: usize = 10;

/// How long a worker that stopped heartbeating stays in the registry.
const DEAD_WORKER: Duration = Duration::from_secs(3_600);

/// Seconds in a day, for the settings counted in days.
const DAY_SECS: u64 = 86_400;

/// A person `s` has no send in a campaign that has not ended.
const NOT_IN_A_RUNNING_CAMPAIGN: &str = "NOT EXISTS (
    SELECT 1 FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
    WHERE d.subscriber_id = s.id AND c.completed_at IS NULL)";

/// A setting counted in days.
fn days(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * DAY_SECS)
}

/// One kind of data that expires: a statement that removes at most `$2` rows older than `$1`
/// seconds.
struct Rule {
    what: &'static str,
    sql: String,
    age: Duration,
}

/// How many rows each rule removed in one pass.
#[derive(Debug, Default)]
struct Pruned {
    /// `(what, rows)` for every rule that removed something.
    removed: Vec<(&'static str, u64)>,
    /// Some rule hit its cap, so another pass is due at once.
    backlog: bool,
}

/// When the next pass is due; the leader asks every tick.
#[derive(Debug)]
pub struct Retention {
    settings: RetentionSettings,
    next: Mutex<Option<Instant>>,
}

impl Retention {
    /// Retention as configured; the first pass runs at the leader's first tick.
    pub fn new(settings: &RetentionSettings) -> Retention {
        Retention {
            settings: settings.clone(),
            next: Mutex::new(None),
        }
    }

    /// Applies retention when a pass is due.
    pub async fn run_if_due(&self, pool: &PgPool) -> anyhow::Result<()> {
        let now = Instant::now();
        {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            if next.is_some_and(|at| now < at) {
                return Ok(());
            }
            *next = Some(now + self.settings.interval());
        }
        let pruned = apply(pool, &self.settings).await?;
        if pruned.backlog {
            *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        if !pruned.removed.is_empty() {
            tracing::info!(removed = ?pruned.removed, backlog = pruned.backlog, "retention applied");
        }
        Ok(())
    }
}

/// One retention pass over every rule.
async fn apply(pool: &PgPool, settings: &RetentionSettings) -> anyhow::Result<Pruned> {
    let mut pruned = Pruned::default();
    for rule in rules(settings) {
        let mut removed = 0;
        let mut capped = true;
        for _ in 0..BATCHES_PER_PASS {
            let batch = sqlx::query(AssertSqlSafe(rule.sql.as_str()))
                .bind(rule.age.as_secs_f64())
                .bind(BATCH)
                .execute(pool)
                .await
                .with_context(|| format!("retention: {}", rule.what))?
                .rows_affected();
            removed += batch;
            if batch < BATCH as u64 {
                capped = false;
                break;
            }
        }
        if removed > 0 {
            pruned.removed.push((rule.what, removed));
        }
        pruned.backlog |= capped;
    }
    Ok(pruned)
}

/// The rules, each deleting in batches of `$2` what is older than `$1` seconds.
fn rules(settings: &RetentionSettings) -> Vec<Rule> {
    vec![
        Rule {
            what: "failed jobs",
            sql: moonengage_queue::jobs::PRUNE_FINISHED.into(),
            age: Duration::from_secs(settings.finished_jobs_secs),
        },
        // Workers that stopped without saying so: an hour of silence is far past their leases.
        Rule {
            what: "dead workers",
            sql: moonengage_queue::workers::PRUNE_DEAD.into(),
            age: DEAD_WORKER,
        },
        // Processed events hold no personal data (processing erased the sender) but are kept a
        // while to recognise redeliveries; an event parked as failed still holds its sealed
        // sender and goes the same time after it failed.
        Rule {
            what: "webhook events",
            sql: "DELETE FROM webhook_events WHERE id IN (
                      SELECT e.id FROM webhook_events e
                      WHERE e.processed_at < now() - make_interval(secs => $1)
                         OR e.failed_at < now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            age: Duration::from_secs(settings.webhook_events_secs),
        },
        // Only campaigns whose totals are frozen (`completed_at` set: completed, or cancelled
        // and settled): a running campaign's deliveries are its send-once claims.
        Rule {
            what: "deliveries",
            sql: "DELETE FROM deliveries WHERE (campaign_id, subscriber_id) IN (
                      SELECT d.campaign_id, d.subscriber_id
                      FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id
                      WHERE c.completed_at < now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            age: days(settings.deliveries_days),
        },
        // People who stopped writing: no campaign can reach them any more. Someone with a send
        // of an unfinished campaign waits for it (their delivery row is its send-once claim).
        Rule {
            what: "inactive subscribers",
            sql: format!(
                "DELETE FROM subscribers WHERE id IN (
                     SELECT s.id FROM subscribers s
                     WHERE s.status <> 'unsubscribed'
                       AND s.last_interaction_at < now() - make_interval(secs => $1)
                       AND {NOT_IN_A_RUNNING_CAMPAIGN}
                     LIMIT $2)"
            ),
            age: days(settings.inactive_subscriber_days),
        },
        // Unsubscribed people: the blind index of their PSID is all that stays, so a re-import
        // or opt-in keeps them unsubscribed (the `subscribers_keep_suppressed` trigger).
        Rule {
            what: "unsubscribed people",
            sql: format!(
                "WITH gone AS (
                     DELETE FROM subscribers WHERE id IN (
                         SELECT s.id FROM subscribers s
                         WHERE s.status = 'unsubscribed'
                           AND greatest(s.unsubscribed_at, s.last_interaction_at)
                               < now() - make_interval(secs => $1)
                           AND {NOT_IN_A_RUNNING_CAMPAIGN}
                         LIMIT $2)
                     RETURNING page_id, psid_index)
                 INSERT INTO suppressions (page_id, psid_index)
                 SELECT page_id, psid_index FROM gone ON CONFLICT DO NOTHING"
            ),
            age: days(settings.unsubscribed_days),
        },
        // An export's lifetime is `privacy.export_ttl_days`, written into `expires_at`.
        Rule {
            what: "expired exports",
            sql: "DELETE FROM exports WHERE id IN (
                      SELECT id FROM exports
                      WHERE expires_at <= now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            age: Duration::ZERO,
        },
        // Completing a request drops its subject; this catches any path that did not.
        Rule {
            what: "subjects of completed requests",
            sql: "UPDATE dsr_requests SET subject_ref = NULL WHERE id IN (
                      SELECT id FROM dsr_requests
                      WHERE subject_ref IS NOT NULL AND status IN ('completed', 'refused')
                        AND coalesce(completed_at, received_at)
                            <= now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            age: Duration::ZERO,
        },
    ]
}
