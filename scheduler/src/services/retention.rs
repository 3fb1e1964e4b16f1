//! The retention service (docs/architecture.md, "Privacy"), run by the leader: jobs failed for
//! good, what is left of processed webhook events, delivery rows of campaigns that ended long
//! ago, subscribers inactive for long and unsubscribed people (keeping only a blind index of the
//! latter), expired exports and the subject of completed data-subject requests: nothing else
//! deletes them once their purpose is served. The rules for personal data are those of the
//! catalog (`moonengage_privacy::catalog::Prune`), one statement each.
//!
//! A pass runs every `retention.interval_ms`. Every statement deletes at most [`BATCH`] rows
//! (short locks, small transactions); a pass stops each rule after [`BATCHES_PER_PASS`], so every
//! rule gets its turn, and another pass follows at once while a backlog remains.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_core::settings::RetentionSettings;
use moonengage_privacy::catalog::Prune;
use sqlx::{AssertSqlSafe, PgPool};

use super::Service;

/// Rows deleted per statement.
const BATCH: i64 = 10_000;
/// Statements per rule per pass, so one rule's backlog never keeps the others waiting long.
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
    /// Some rule hit its cap, so another pass follows at once.
    backlog: bool,
}

/// Applies retention every `retention.interval_ms`.
#[derive(Debug)]
pub struct Retention {
    settings: RetentionSettings,
}

impl Retention {
    /// Retention as configured; the first pass runs as soon as this scheduler leads.
    pub fn new(settings: &RetentionSettings) -> Retention {
        Retention {
            settings: settings.clone(),
        }
    }
}

impl Service for Retention {
    const NAME: &'static str = "retention";

    fn interval(&self) -> Duration {
        self.settings.interval()
    }

    /// Passes follow one another while a rule hit its cap, so a backlog is worked off without
    /// waiting an interval per pass.
    async fn run_once(&mut self, pool: &PgPool) -> anyhow::Result<()> {
        loop {
            let pruned = apply(pool, &self.settings).await?;
            if !pruned.removed.is_empty() {
                tracing::info!(removed = ?pruned.removed, backlog = pruned.backlog, "retention applied");
            }
            if !pruned.backlog {
                return Ok(());
            }
        }
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

/// The rules, each deleting in batches of `$2` what is older than `$1` seconds: one for each
/// rule of the personal-data catalog (`moonengage_privacy::catalog::Prune`), and the registry of
/// dead workers.
fn rules(settings: &RetentionSettings) -> Vec<Rule> {
    // Workers that stopped without saying so: an hour of silence is far past their leases.
    let dead_workers = Rule {
        what: "dead workers",
        sql: moonengage_queue::workers::PRUNE_DEAD.into(),
        age: DEAD_WORKER,
    };
    Prune::ALL
        .into_iter()
        .map(|prune| {
            let (sql, age) = prune_sql(prune, settings);
            Rule {
                what: prune.what(),
                sql,
                age,
            }
        })
        .chain([dead_workers])
        .collect()
}

/// The statement of a catalog rule, and the age it applies from.
fn prune_sql(prune: Prune, settings: &RetentionSettings) -> (String, Duration) {
    match prune {
        Prune::FailedJobs => (
            moonengage_queue::jobs::PRUNE_FINISHED.into(),
            Duration::from_secs(settings.finished_jobs_secs),
        ),
        // Processed events hold no personal data (processing erased the sender) but are kept a
        // while to recognise redeliveries; an event parked as failed still holds its sealed
        // sender and goes the same time after it failed.
        Prune::WebhookEvents => (
            "DELETE FROM webhook_events WHERE id IN (
                 SELECT e.id FROM webhook_events e
                 WHERE e.processed_at < now() - make_interval(secs => $1)
                    OR e.failed_at < now() - make_interval(secs => $1)
                 LIMIT $2)"
                .into(),
            Duration::from_secs(settings.webhook_events_secs),
        ),
        // Only campaigns whose totals are frozen (`completed_at` set: completed, or cancelled
        // and settled): a running campaign's deliveries are its send-once claims.
        Prune::Deliveries => (
            "DELETE FROM deliveries WHERE (campaign_id, subscriber_id) IN (
                      SELECT d.campaign_id, d.subscriber_id
                      FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id
                      WHERE c.completed_at < now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            days(settings.deliveries_days),
        ),
        // People who stopped writing: no campaign can reach them any more. Someone with a send
        // of an unfinished campaign waits for it (their delivery row is its send-once claim).
        Prune::InactiveSubscribers => (
            format!(
                "DELETE FROM subscribers WHERE id IN (
                     SELECT s.id FROM subscribers s
                     WHERE s.status <> 'unsubscribed'
                       AND s.last_interaction_at < now() - make_interval(secs => $1)
                       AND {NOT_IN_A_RUNNING_CAMPAIGN}
                     LIMIT $2)"
            ),
            days(settings.inactive_subscriber_days),
        ),
        // Unsubscribed people: the blind index of their PSID is all that stays, so a re-import
        // or opt-in keeps them unsubscribed (the `subscribers_keep_suppressed` trigger).
        Prune::UnsubscribedPeople => (
            format!(
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
            days(settings.unsubscribed_days),
        ),
        // An export's lifetime is `privacy.export_ttl_days`, written into `expires_at`.
        Prune::ExpiredExports => (
            "DELETE FROM exports WHERE id IN (
                      SELECT id FROM exports
                      WHERE expires_at <= now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            Duration::ZERO,
        ),
        // Completing a request drops its subject; this catches any path that did not.
        Prune::CompletedRequestSubjects => (
            "UPDATE dsr_requests SET subject_ref = NULL WHERE id IN (
                      SELECT id FROM dsr_requests
                      WHERE subject_ref IS NOT NULL AND status IN ('completed', 'refused')
                        AND coalesce(completed_at, received_at)
                            <= now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            Duration::ZERO,
        ),
        // Account holders' security events: kept for them to see, for nothing else.
        Prune::AccountActivity => (
            "DELETE FROM account_events WHERE (user_id, id) IN (
                      SELECT user_id, id FROM account_events
                      WHERE at < now() - make_interval(secs => $1)
                      LIMIT $2)"
                .into(),
            days(settings.account_activity_days),
        ),
    }
}
