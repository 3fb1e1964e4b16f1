//! What happens to a campaign's sends as a whole: fan-out creates them, resuming re-paces them,
//! cancelling and erasure settle them, and the leader folds their counts into the campaign.
//! Each is one set-based statement over `deliveries`, run in its caller's transaction.

use anyhow::Context as _;
use sqlx::{PgConnection, PgPool};

use super::KIND;
use crate::wake;

/// Fans out the next batch of a running campaign: every recipient after `cursor` (up to
/// `size`) becomes a queued row, or a skipped one with its reason (`outside_window`,
/// `unsubscribed`, `unreachable`); the cursor, the recipient count and the skip count move in
/// the same statement. With `pace`, the n-th queued row of a campaign is due at
/// `started_at + n / send_rate`. The campaign row is locked first and its cursor checked, so a
/// batch that lost a race adds nothing; the cursor moves in the same statement, so a crash
/// between batches resumes exactly after the last one. The primary key keeps anyone from being
/// queued twice even if the cursor were moved back by hand (the batch then fails whole): no
/// `ON CONFLICT`, whose speculative insertion cost 1M-row fan-outs two thirds of their speed.
/// Returns whether the campaign is fully fanned out.
pub async fn fan_out(
    pool: &PgPool,
    campaign_id: i64,
    cursor: i64,
    size: i64,
    pace: bool,
) -> anyhow::Result<bool> {
    let done: Option<bool> = sqlx::query_scalar(
        "WITH campaign AS (
             SELECT c.id, c.page_id, c.queued, coalesce(c.started_at, now()) AS started_at,
                    p.send_rate
             FROM campaigns c JOIN pages p ON p.id = c.page_id
             WHERE c.id = $1 AND c.fanout_cursor = $2 AND c.state = 'running'
             FOR UPDATE OF c
         ),
         batch AS (
             SELECT s.id,
                    CASE WHEN s.status <> 'active' THEN s.status
                         WHEN NOT in_messaging_window(s.last_interaction_at)
                              THEN 'outside_window' END AS skip
             FROM subscribers s, campaign
             WHERE s.page_id = campaign.page_id AND s.id > $2
             ORDER BY s.id
             LIMIT $3
         ),
         numbered AS (
             SELECT id, skip, row_number() OVER (PARTITION BY skip IS NULL ORDER BY id) AS n
             FROM batch
         ),
         inserted AS (
             INSERT INTO deliveries (campaign_id, subscriber_id, status, reason, run_at)
             SELECT c.id, b.id,
                    CASE WHEN b.skip IS NULL THEN 'queued' ELSE 'skipped' END, b.skip,
                    CASE WHEN b.skip IS NULL AND $4
                         THEN greatest(now(), c.started_at + make_interval(
                                  secs => (c.queued + b.n - 1)::float8 / c.send_rate))
                         ELSE now() END
             FROM numbered b, campaign c
             RETURNING status
         ),
         woken AS (SELECT pg_notify($5, $6))
         UPDATE campaigns SET
             fanout_cursor = coalesce((SELECT max(id) FROM batch), fanout_cursor),
             fanout_done = (SELECT count(*) FROM batch) < $3,
             recipients = recipients + (SELECT count(*) FROM batch),
             queued = queued + (SELECT count(*) FROM batch WHERE skip IS NULL),
             skipped = skipped + (SELECT count(*) FROM inserted WHERE status = 'skipped')
         WHERE id = (SELECT id FROM campaign) AND EXISTS (SELECT 1 FROM woken)
         RETURNING fanout_done",
    )
    .bind(campaign_id)
    .bind(cursor)
    .bind(size)
    .bind(pace)
    .bind(wake::CHANNEL)
    .bind(KIND)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("fanning out campaign {campaign_id}"))?;
    Ok(done.unwrap_or(true))
}

/// Makes a resumed campaign's queued rows due again, paced at its Page's rate from now, so the
/// resumed campaign does not crowd out other Pages. Nobody is messaged twice: rows already
/// settled are not queued.
pub async fn repace(conn: &mut PgConnection, campaign_id: i64) -> sqlx::Result<u64> {
    let moved = sqlx::query(
        "WITH waiting AS (
             SELECT d.subscriber_id, row_number() OVER (ORDER BY d.run_at, d.subscriber_id) AS n,
                    p.send_rate
             FROM deliveries d
             JOIN campaigns c ON c.id = d.campaign_id
             JOIN pages p ON p.id = c.page_id
             WHERE d.campaign_id = $1 AND d.status = 'queued'
         )
         UPDATE deliveries d
         SET run_at = now() + make_interval(secs => (waiting.n - 1)::float8 / waiting.send_rate)
         FROM waiting
         WHERE d.campaign_id = $1 AND d.subscriber_id = waiting.subscriber_id
           AND d.status = 'queued'",
    )
    .bind(campaign_id)
    .execute(&mut *conn)
    .await?;
    wake::notify(&mut *conn, KIND).await?;
    Ok(moved.rows_affected())
}

/// Cancels a campaign's queued rows: each is recorded as skipped (`cancelled`), and so is
/// everyone not fanned out yet, so the totals cover the whole audience and add up. Sends under
/// way finish and are recorded as they end. Run inside the transaction that cancels it.
pub async fn cancel(conn: &mut PgConnection, campaign_id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "WITH queued AS (
             UPDATE deliveries SET status = 'skipped', reason = 'cancelled', updated_at = now()
             WHERE campaign_id = $1 AND status = 'queued'
             RETURNING 1
         ),
         rest AS (
             INSERT INTO deliveries (campaign_id, subscriber_id, status, reason)
             SELECT c.id, s.id, 'skipped', 'cancelled'
             FROM campaigns c JOIN subscribers s ON s.page_id = c.page_id AND s.id > c.fanout_cursor
             WHERE c.id = $1 AND NOT c.fanout_done
             ON CONFLICT DO NOTHING
             RETURNING 1
         )
         UPDATE campaigns SET state = 'cancelled', fanout_done = true,
             recipients = recipients + (SELECT count(*) FROM rest),
             skipped = skipped + (SELECT count(*) FROM rest) + (SELECT count(*) FROM queued)
         WHERE id = $1",
    )
    .bind(campaign_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Erases a person's sends (queued and settled) after counting those not settled yet as
/// skipped, so their campaigns still add up and complete. Returns the rows removed. Run in the
/// erasure's transaction, before their subscriber row goes: their deliveries are found through
/// their Page's campaigns and the primary key (the table has no index by person).
pub async fn erase(conn: &mut PgConnection, subscriber_id: i64) -> sqlx::Result<u64> {
    let erased: i64 = sqlx::query_scalar(
        "WITH theirs AS (
             DELETE FROM deliveries d
             USING campaigns c, subscribers s
             WHERE s.id = $1 AND c.page_id = s.page_id
               AND d.campaign_id = c.id AND d.subscriber_id = $1
             RETURNING d.campaign_id, d.status
         ),
         unsettled AS (
             UPDATE campaigns c SET skipped = c.skipped + n.n
             FROM (SELECT campaign_id, count(*) AS n FROM theirs
                   WHERE status IN ('queued', 'sending') GROUP BY campaign_id) n
             WHERE c.id = n.campaign_id AND c.completed_at IS NULL
         )
         SELECT count(*) FROM theirs",
    )
    .bind(subscriber_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(erased).unwrap_or(0))
}

/// Folds the counts workers appended (`campaign_tallies`) into their campaigns' counters.
/// Run by the scheduler leader before it completes campaigns; deleting the tallies it adds
/// keeps every count exactly once, whatever workers append meanwhile.
pub async fn fold_tallies(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let folded = sqlx::query(
        "WITH taken AS (DELETE FROM campaign_tallies RETURNING *),
         sums AS (
             SELECT campaign_id, sum(sent) AS sent, sum(skipped) AS skipped,
                    sum(failed) AS failed, sum(unknown) AS unknown
             FROM taken GROUP BY campaign_id
         )
         UPDATE campaigns c SET
             sent = c.sent + sums.sent, skipped = c.skipped + sums.skipped,
             failed = c.failed + sums.failed, unknown = c.unknown + sums.unknown
         FROM sums WHERE c.id = sums.campaign_id",
    )
    .execute(conn)
    .await?;
    Ok(folded.rows_affected())
}
