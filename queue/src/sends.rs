//! Sends: a campaign's `deliveries` row is its send job. Fan-out inserts the rows (queued, or
//! skipped with a reason) set-based; workers claim due rows in batches together with what a
//! send needs, and settle them in batched flushes that also append their campaigns' counts
//! (`campaign_tallies`, folded by the scheduler), so progress and completion never count rows.
//!
//! States: `queued → sending → sent | failed | unknown | skipped`. A retry or a deferral puts
//! the same row back to `queued` with a later run time; a `sending` row whose lease expired
//! settles `unknown` (the message may have gone out: never resent).

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::backend::{Claimed, Source};
use crate::flush::Sink;

mod campaign;

pub use campaign::{cancel, erase, fan_out, fold_tallies, repace};

/// The kind name of sends (wake-ups, metrics, live workers).
pub const KIND: &str = "send";

/// One claimed send and everything the worker needs to decide and make it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Send {
    /// The campaign.
    pub campaign_id: i64,
    /// The recipient, by internal id.
    pub subscriber_id: i64,
    /// This attempt, counting from 1.
    pub attempt: i32,
    /// The campaign's state now (`running`, `paused`, `cancelled`, …).
    pub campaign_state: String,
    /// The campaign's template source.
    pub template: String,
    /// The Page it goes from.
    pub page_id: i64,
    /// The Page's name (a template variable).
    pub page_name: String,
    /// `active` or `halted`.
    pub page_status: String,
    /// The Page's sealed access token.
    pub access_token: Vec<u8>,
    /// The Page's send rate per second.
    pub send_rate: i32,
    /// The person's status (`active`, `unsubscribed`, `unreachable`).
    pub subscriber_status: String,
    /// The person's sealed PSID.
    pub psid: Vec<u8>,
    /// The person's sealed first name, if known.
    pub first_name: Option<Vec<u8>>,
    /// Whether the person's 24-hour window is open.
    pub in_window: bool,
    #[sqlx(rename = "run_at")]
    due_at: i64,
}

/// How a send ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Facebook accepted it.
    Sent {
        /// Facebook's message id.
        message_id: String,
    },
    /// Not sent, for a recorded reason.
    Skipped(String),
    /// Failed for good (reason: error class).
    Failed(String),
    /// May or may not have reached the person: never resent.
    Unknown(String),
    /// Not sent yet: run again after `after`; `spend_attempt` false for a deferral.
    Retry {
        /// When.
        after: Duration,
        /// Whether this attempt counts.
        spend_attempt: bool,
        /// Why (error class).
        reason: String,
    },
    /// Not sent: the campaign or its Page is paused; the row waits, claimed by nobody until the
    /// campaign runs again.
    Park,
}

/// An outcome for one claimed row.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The campaign.
    pub campaign_id: i64,
    /// The recipient.
    pub subscriber_id: i64,
    /// What happened.
    pub outcome: Outcome,
}

impl Settled {
    /// Parameter bytes of the outcome in a settle statement.
    fn bytes(&self) -> usize {
        let (status, reason, message_id, ..) = columns(&self.outcome);
        60 + status.as_str().len() + reason.map_or(0, str::len) + message_id.map_or(0, str::len)
    }
}

/// Where a delivery (a send job) is (`deliveries.status`; the SQL of this module names the same
/// values): `queued → sending → sent | failed | unknown | skipped`, back to `queued` for a
/// retry or a deferral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at its run time.
    Queued,
    /// Claimed by a worker (leased).
    Sending,
    /// Facebook accepted it.
    Sent,
    /// Not sent, with the reason.
    Skipped,
    /// Failed for good.
    Failed,
    /// May or may not have reached the person: never resent.
    Unknown,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
        }
    }
}

/// The columns an outcome writes: status, reason, message id, delay before the next run, and
/// whether the attempt is given back.
fn columns(outcome: &Outcome) -> (DeliveryStatus, Option<&str>, Option<&str>, f64, bool) {
    match outcome {
        Outcome::Sent { message_id } => (DeliveryStatus::Sent, None, Some(message_id), 0.0, false),
        Outcome::Skipped(reason) => (DeliveryStatus::Skipped, Some(reason), None, 0.0, false),
        Outcome::Failed(reason) => (DeliveryStatus::Failed, Some(reason), None, 0.0, false),
        Outcome::Unknown(reason) => (DeliveryStatus::Unknown, Some(reason), None, 0.0, false),
        Outcome::Retry {
            after,
            spend_attempt,
            reason,
        } => (
            DeliveryStatus::Queued,
            Some(reason),
            None,
            after.as_secs_f64(),
            !spend_attempt,
        ),
        Outcome::Park => (DeliveryStatus::Queued, None, None, 0.0, true),
    }
}

/// Claims and settles sends for one worker.
#[derive(Clone)]
pub struct Sends {
    pool: PgPool,
    worker: String,
    lease: Duration,
}

impl Sends {
    /// The sends of worker `worker`, leased for `lease` between heartbeats.
    pub fn new(pool: PgPool, worker: impl Into<String>, lease: Duration) -> Sends {
        Sends {
            pool,
            worker: worker.into(),
            lease,
        }
    }

    /// Writes outcomes of rows this worker holds, and appends their campaigns' counts: one
    /// statement per run of about 12 KiB of outcomes (see `STATEMENT_BYTES`).
    pub async fn settle(&self, batch: &[Settled]) -> sqlx::Result<()> {
        for run in crate::runs(batch, Settled::bytes) {
            self.settle_run(run).await?;
        }
        Ok(())
    }

    /// A row is held exactly while it is `sending`, and exactly then has a lease; the statement
    /// tests the lease rather than the status so that Postgres finds each row by its primary key
    /// instead of scanning every `sending` row through the lease index.
    async fn settle_run(&self, batch: &[Settled]) -> sqlx::Result<()> {
        let mut campaigns = Vec::with_capacity(batch.len());
        let mut subscribers = Vec::with_capacity(batch.len());
        let mut statuses = Vec::with_capacity(batch.len());
        let mut reasons = Vec::with_capacity(batch.len());
        let mut message_ids = Vec::with_capacity(batch.len());
        let mut delays = Vec::with_capacity(batch.len());
        let mut refunds = Vec::with_capacity(batch.len());
        for settled in batch {
            let (status, reason, message_id, delay, refund) = columns(&settled.outcome);
            campaigns.push(settled.campaign_id);
            subscribers.push(settled.subscriber_id);
            statuses.push(status.as_str());
            reasons.push(reason.map(str::to_owned));
            message_ids.push(message_id.map(str::to_owned));
            delays.push(delay);
            refunds.push(refund);
        }
        sqlx::query(
            "WITH o AS (
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                                      $5::text[], $6::float8[], $7::bool[])
                     AS o(campaign_id, subscriber_id, status, reason, message_id, delay, refund)
             ),
             settled AS (
                 UPDATE deliveries d SET
                     status = o.status, reason = o.reason, message_id = o.message_id,
                     attempts = d.attempts - o.refund::int,
                     run_at = CASE WHEN o.status = 'queued'
                                   THEN now() + make_interval(secs => o.delay) ELSE d.run_at END,
                     lease_until = NULL, updated_at = now()
                 FROM o
                 WHERE d.campaign_id = o.campaign_id AND d.subscriber_id = o.subscriber_id
                   AND d.locked_by = $8 AND d.lease_until IS NOT NULL
                 RETURNING d.campaign_id, d.status
             )
             INSERT INTO campaign_tallies (campaign_id, sent, skipped, failed, unknown)
             SELECT campaign_id,
                    count(*) FILTER (WHERE status = 'sent'),
                    count(*) FILTER (WHERE status = 'skipped'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'unknown')
             FROM settled WHERE status <> 'queued' GROUP BY campaign_id",
        )
        .bind(&campaigns)
        .bind(&subscribers)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&message_ids)
        .bind(&delays)
        .bind(&refunds)
        .bind(&self.worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Source for Sends {
    type Item = Send;

    /// Each running campaign of an active, unpaused Page gets an equal share of the claim; in
    /// each, the due rows in run-time order. A paused campaign or Page is simply not claimed
    /// from: pausing touches no row.
    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<Claimed<Send>>> {
        let rows: Vec<Send> = sqlx::query_as(
            "WITH running AS (
                 SELECT c.id FROM campaigns c JOIN pages p ON p.id = c.page_id
                 WHERE c.state = 'running' AND p.status = 'active'
                   AND (p.paused_until IS NULL OR p.paused_until <= now())
             ),
             share AS (
                 SELECT greatest(1, ceil($1::float8 / greatest(count(*), 1)))::int AS n
                 FROM running
             ),
             picked AS (
                 SELECT d.campaign_id, d.subscriber_id
                 FROM running r CROSS JOIN share
                 CROSS JOIN LATERAL (
                     SELECT campaign_id, subscriber_id FROM deliveries
                     WHERE campaign_id = r.id AND status = 'queued' AND run_at <= now()
                     ORDER BY run_at
                     LIMIT share.n
                     FOR UPDATE SKIP LOCKED
                 ) d
                 LIMIT $1
             ),
             claimed AS (
                 UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1,
                     lease_until = now() + make_interval(secs => $2), locked_by = $3,
                     updated_at = now()
                 FROM picked
                 WHERE d.campaign_id = picked.campaign_id AND d.subscriber_id = picked.subscriber_id
                 RETURNING d.campaign_id, d.subscriber_id, d.attempts, d.run_at
             )
             SELECT cl.campaign_id, cl.subscriber_id, cl.attempts AS attempt,
                    extract(epoch FROM cl.run_at)::bigint AS run_at,
                    c.state AS campaign_state, c.template, c.page_id, p.name AS page_name,
                    p.status AS page_status, p.access_token, p.send_rate,
                    s.status AS subscriber_status, s.psid, s.first_name,
                    in_messaging_window(s.last_interaction_at) AS in_window
             FROM claimed cl
             JOIN campaigns c ON c.id = cl.campaign_id
             JOIN pages p ON p.id = c.page_id
             JOIN subscribers s ON s.id = cl.subscriber_id",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.lease.as_secs_f64())
        .bind(&self.worker)
        .fetch_all(&self.pool)
        .await
        .context("claiming sends")?;
        Ok(rows
            .into_iter()
            .map(|send| Claimed {
                previous_attempts: usize::try_from(send.attempt - 1).unwrap_or(0),
                run_at: u64::try_from(send.due_at).unwrap_or(0),
                item: send,
            })
            .collect())
    }

    async fn release(&self, items: Vec<Send>) -> anyhow::Result<()> {
        let batch: Vec<Settled> = items
            .into_iter()
            .map(|send| Settled {
                campaign_id: send.campaign_id,
                subscriber_id: send.subscriber_id,
                outcome: Outcome::Park,
            })
            .collect();
        self.settle(&batch).await.context("giving back sends")
    }
}

impl Sink for Sends {
    type Outcome = Settled;

    async fn write(&self, batch: &[Settled]) -> anyhow::Result<()> {
        self.settle(batch).await.context("writing send outcomes")
    }
}

/// Settles every `sending` row whose lease expired (its worker died or lost the database) as
/// `unknown`: the message may have gone out, so it is never sent again.
pub async fn settle_expired(pool: &PgPool) -> sqlx::Result<u64> {
    let expired: i64 = sqlx::query_scalar(
        "WITH expired AS (
             UPDATE deliveries d SET status = 'unknown', reason = 'interrupted',
                 lease_until = NULL, updated_at = now()
             FROM (SELECT campaign_id, subscriber_id FROM deliveries
                   WHERE status = 'sending' AND lease_until < now()
                   FOR UPDATE SKIP LOCKED) x
             WHERE d.campaign_id = x.campaign_id AND d.subscriber_id = x.subscriber_id
             RETURNING d.campaign_id
         ),
         counted AS (
             INSERT INTO campaign_tallies (campaign_id, sent, skipped, failed, unknown)
             SELECT campaign_id, 0, 0, 0, count(*) FROM expired GROUP BY campaign_id
         )
         SELECT count(*) FROM expired",
    )
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(expired).unwrap_or(0))
}
