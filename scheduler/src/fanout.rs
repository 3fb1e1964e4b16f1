//! Campaign fan-out: each due campaign becomes one send job per eligible recipient, written by
//! one set-based statement per batch. The statement also records a skip, with its reason, for
//! every recipient who is not eligible, and advances the campaign's cursor in the same
//! transaction — so a crash between batches resumes with no duplicate and no gap.

use anyhow::Context as _;
use sqlx::PgPool;

use moonengage_core::notify::{self, AdminEvent};
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

/// Campaigns still being fanned out, oldest first, with their cursors.
pub async fn pending(pool: &PgPool) -> anyhow::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT id, fanout_cursor FROM campaigns
         WHERE state = 'running' AND NOT fanout_done ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("listing campaigns to fan out")
}

/// Fans out the next batch of one campaign; returns whether the campaign is fully fanned out.
/// With `pace`, the n-th job of a campaign is due at `started_at + n / send_rate`, so jobs of
/// different Pages interleave in the queue by run time. Its priority falls by one for each second
/// into its campaign (`n / send_rate`; apalis wants it non-negative, so it counts down from a
/// million): workers fetch by priority first, so when they fall behind,
/// every campaign advances at the same pace and a new small campaign goes ahead of the
/// millionth job of a big one (fair queuing by virtual time). The `fanout_cursor = $3` guard makes a
/// batch that lost a race count nothing, and the unique idempotency key of a job (campaign and
/// recipient) keeps it from being queued twice.
pub async fn batch(
    pool: &PgPool,
    campaign_id: i64,
    cursor: i64,
    size: i64,
    max_attempts: i32,
    pace: bool,
) -> anyhow::Result<bool> {
    let done: Option<bool> = sqlx::query_scalar(
        "WITH campaign AS (
             SELECT c.id, c.page_id, c.queued, coalesce(c.started_at, now()) AS started_at,
                    p.send_rate
             FROM campaigns c JOIN pages p ON p.id = c.page_id
             WHERE c.id = $1
         ),
         batch AS (
             SELECT s.id, s.status,
                    s.last_interaction_at > now() - interval '24 hours' AS in_window
             FROM subscribers s, campaign
             WHERE s.page_id = campaign.page_id AND s.id > $2
             ORDER BY s.id
             LIMIT $3
         ),
         eligible AS (
             SELECT id, row_number() OVER (ORDER BY id) AS n
             FROM batch WHERE status = 'active' AND in_window
         ),
         jobs AS (
             INSERT INTO apalis.jobs
               (id, job_type, job, status, attempts, max_attempts, run_at, priority, idempotency_key)
             SELECT apalis.generate_ulid(), $4,
                    convert_to(json_build_object('campaign_id', $1::bigint, 'subscriber_id', e.id)::text, 'UTF8'),
                    'Pending', 0, $5,
                    CASE WHEN $6 THEN greatest(now(), c.started_at + make_interval(
                             secs => (c.queued + e.n - 1)::float8 / c.send_rate))
                         ELSE now() END,
                    greatest(0, 1000000 - (c.queued + e.n - 1) / c.send_rate)::int,
                    $1::bigint || ':' || e.id
             FROM eligible e, campaign c
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
             fanout_done = (SELECT count(*) FROM batch) < $3,
             recipients = recipients + (SELECT count(*) FROM batch),
             queued = queued + (SELECT count(*) FROM eligible)
         WHERE id = $1 AND fanout_cursor = $2 AND state = 'running'
         RETURNING fanout_done",
    )
    .bind(campaign_id)
    .bind(cursor)
    .bind(size)
    .bind(SEND_QUEUE)
    .bind(max_attempts)
    .bind(pace)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("fanning out campaign {campaign_id}"))?;
    Ok(done.unwrap_or(true))
}

/// Completes every fanned-out running campaign whose recipients all have a final outcome, and
/// freezes its counters in the campaign row (they outlive the delivery rows). Admins are
/// e-mailed in the same transaction: "failed" when nothing was sent and sends failed, else
/// "completed".
pub async fn complete_finished(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut tx = pool
        .begin()
        .await
        .context("starting to complete campaigns")?;
    let completed = freeze(&mut tx, "running", "completed")
        .await
        .context("completing finished campaigns")?;
    for &(campaign_id, sent, failed) in &completed {
        let event = if sent == 0 && failed > 0 {
            AdminEvent::CampaignFailed { campaign_id }
        } else {
            AdminEvent::CampaignCompleted { campaign_id }
        };
        notify::admin(&mut *tx, event).await?;
    }
    tx.commit()
        .await
        .context("committing completed campaigns")?;
    Ok(completed.into_iter().map(|(id, ..)| id).collect())
}

/// Freezes the counters of every cancelled campaign once its recipients all have a final outcome
/// (sends under way when it was cancelled have ended), and stamps `completed_at`: from then on
/// its totals live in the campaign row, like a completed campaign's, so retention may delete its
/// delivery rows. The state stays `cancelled`.
pub async fn freeze_cancelled(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut conn = pool.acquire().await?;
    let frozen = freeze(&mut conn, "cancelled", "cancelled")
        .await
        .context("freezing cancelled campaigns")?;
    Ok(frozen.into_iter().map(|(id, ..)| id).collect())
}

/// Moves every fanned-out campaign in state `from` whose recipients all have a final outcome to
/// state `to`, stamping `completed_at` and copying its counters from `deliveries`. Returns each
/// campaign's id, sent and failed counts.
async fn freeze(
    conn: &mut sqlx::PgConnection,
    from: &str,
    to: &str,
) -> sqlx::Result<Vec<(i64, i32, i32)>> {
    sqlx::query_as(
        "WITH counts AS (
             SELECT c.id,
                    count(d.*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(d.*) FILTER (WHERE d.status = 'skipped') AS skipped,
                    count(d.*) FILTER (WHERE d.status = 'failed') AS failed,
                    count(d.*) FILTER (WHERE d.status = 'unknown') AS unknown
             FROM campaigns c
             LEFT JOIN deliveries d ON d.campaign_id = c.id
             WHERE c.state = $1 AND c.fanout_done AND c.completed_at IS NULL
             GROUP BY c.id
         )
         UPDATE campaigns c
         SET state = $2, completed_at = now(),
             sent = counts.sent, skipped = counts.skipped,
             failed = counts.failed, unknown = counts.unknown
         FROM counts
         WHERE c.id = counts.id
           AND counts.sent + counts.skipped + counts.failed + counts.unknown = c.recipients
         RETURNING c.id, c.sent, c.failed",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}
