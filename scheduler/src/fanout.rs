//! Campaign fan-out: each due campaign becomes one send job per eligible recipient, written by
//! one set-based statement per batch. The statement also records a skip, with its reason, for
//! every recipient who is not eligible, and advances the campaign's cursor in the same
//! transaction — so a crash between batches resumes with no duplicate and no gap.

use anyhow::Context as _;
use sqlx::PgPool;

use moonengage_core::queue::SEND_QUEUE;

/// Starts every scheduled campaign whose time has come.
pub async fn start_due(pool: &PgPool) -> anyhow::Result<u64> {
    let started = sqlx::query(
        "UPDATE campaigns SET state = 'running', started_at = now()
         WHERE state = 'scheduled' AND scheduled_at <= now()",
    )
    .execute(pool)
    .await
    .context("starting due campaigns")?;
    Ok(started.rows_affected())
}

/// Campaigns still being fanned out, oldest first.
pub async fn pending(pool: &PgPool) -> anyhow::Result<Vec<(i64, i64, i64)>> {
    sqlx::query_as(
        "SELECT id, page_id, fanout_cursor FROM campaigns
         WHERE state = 'running' AND NOT fanout_done ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("listing campaigns to fan out")
}

/// Fans out the next batch of one campaign; returns whether the campaign is fully fanned out.
/// The `fanout_cursor = $3` guard makes a batch that lost a race count nothing, and the unique
/// idempotency key of a job (campaign and recipient) keeps it from being queued twice.
pub async fn batch(
    pool: &PgPool,
    campaign_id: i64,
    page_id: i64,
    cursor: i64,
    size: i64,
    max_attempts: i32,
) -> anyhow::Result<bool> {
    let done: Option<bool> = sqlx::query_scalar(
        "WITH batch AS (
             SELECT id, status, last_interaction_at > now() - interval '24 hours' AS in_window
             FROM subscribers
             WHERE page_id = $2 AND id > $3
             ORDER BY id
             LIMIT $4
         ),
         jobs AS (
             INSERT INTO apalis.jobs
               (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
             SELECT apalis.generate_ulid(), $5,
                    convert_to(json_build_object('campaign_id', $1::bigint, 'subscriber_id', id)::text, 'UTF8'),
                    'Pending', 0, $6, now(), 0, $1::bigint || ':' || id
             FROM batch WHERE status = 'active' AND in_window
             ON CONFLICT (job_type, idempotency_key) DO NOTHING
         ),
         skips AS (
             INSERT INTO deliveries (campaign_id, subscriber_id, status, reason)
             SELECT $1, id, 'skipped', CASE WHEN status <> 'active' THEN status ELSE 'outside_window' END
             FROM batch WHERE NOT (status = 'active' AND in_window)
             ON CONFLICT DO NOTHING
         )
         UPDATE campaigns SET
             fanout_cursor = coalesce((SELECT max(id) FROM batch), fanout_cursor),
             fanout_done = (SELECT count(*) FROM batch) < $4,
             recipients = recipients + (SELECT count(*) FROM batch)
         WHERE id = $1 AND fanout_cursor = $3 AND state = 'running'
         RETURNING fanout_done",
    )
    .bind(campaign_id)
    .bind(page_id)
    .bind(cursor)
    .bind(size)
    .bind(SEND_QUEUE)
    .bind(max_attempts)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("fanning out campaign {campaign_id}"))?;
    Ok(done.unwrap_or(true))
}

/// Completes every fanned-out running campaign whose recipients all have a final outcome, and
/// freezes its counters in the campaign row (they outlive the delivery rows).
pub async fn complete_finished(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar(
        "WITH counts AS (
             SELECT c.id,
                    count(d.*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(d.*) FILTER (WHERE d.status = 'skipped') AS skipped,
                    count(d.*) FILTER (WHERE d.status = 'failed') AS failed,
                    count(d.*) FILTER (WHERE d.status = 'unknown') AS unknown
             FROM campaigns c
             LEFT JOIN deliveries d ON d.campaign_id = c.id
             WHERE c.state = 'running' AND c.fanout_done
             GROUP BY c.id
         )
         UPDATE campaigns c
         SET state = 'completed', completed_at = now(),
             sent = counts.sent, skipped = counts.skipped,
             failed = counts.failed, unknown = counts.unknown
         FROM counts
         WHERE c.id = counts.id
           AND counts.sent + counts.skipped + counts.failed + counts.unknown = c.recipients
         RETURNING c.id",
    )
    .fetch_all(pool)
    .await
    .context("completing finished campaigns")
}
