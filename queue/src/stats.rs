//! What the queue holds, for the gauges the scheduler leader publishes. Every count reads a
//! partial index or the small `jobs` table, never the whole history of deliveries or events.

use std::time::Duration;

use sqlx::PgPool;

use crate::{events, sends};

/// Jobs by kind and state: `pending` (due), `scheduled` (due later, including parked),
/// `running` (claimed), `dead` (failed for good). A job that succeeded is gone (its executions
/// are counted by the workers); sends report no `dead`: their outcomes are deliveries,
/// counted per campaign. Webhook events report `dead` for those parked as failed.
pub async fn depth(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT $1::text, CASE WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END, count(*)
         FROM deliveries WHERE status = 'queued' GROUP BY 2
         UNION ALL
         SELECT $1::text, 'running', count(*) FROM deliveries WHERE status = 'sending'
         UNION ALL
         SELECT kind, CASE WHEN status = 'failed' THEN 'dead'
                           WHEN lease_until > now() THEN 'running'
                           WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END,
                count(*)
         FROM jobs GROUP BY 1, 2
         UNION ALL
         SELECT $2::text, CASE WHEN lease_until > now() THEN 'running'
                               WHEN run_at > now() THEN 'scheduled' ELSE 'pending' END,
                count(*)
         FROM webhook_events WHERE processed_at IS NULL AND failed_at IS NULL GROUP BY 2
         UNION ALL
         SELECT $2::text, 'dead', count(*) FROM webhook_events WHERE failed_at IS NOT NULL",
    )
    .bind(sends::KIND)
    .bind(events::KIND)
    .fetch_all(pool)
    .await
}

/// Per kind, how long the oldest due job has been waiting, in seconds. Sends of paused
/// campaigns or Pages are not waiting on workers and are left out.
pub async fn oldest_due(pool: &PgPool) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT $1::text, extract(epoch FROM now() - min(d.run_at))::float8
         FROM campaigns c
         JOIN pages p ON p.id = c.page_id
         CROSS JOIN LATERAL (
             SELECT run_at FROM deliveries
             WHERE campaign_id = c.id AND status = 'queued' AND run_at <= now()
             ORDER BY run_at LIMIT 1
         ) d
         WHERE c.state = 'running' AND p.status = 'active'
           AND (p.paused_until IS NULL OR p.paused_until <= now())
         HAVING count(*) > 0
         UNION ALL
         SELECT kind, extract(epoch FROM now() - min(run_at))::float8
         FROM jobs WHERE status = 'queued' AND run_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         GROUP BY 1
         UNION ALL
         SELECT $2::text, extract(epoch FROM now() - min(run_at))::float8
         FROM webhook_events
         WHERE processed_at IS NULL AND failed_at IS NULL AND run_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         HAVING count(*) > 0",
    )
    .bind(sends::KIND)
    .bind(events::KIND)
    .fetch_all(pool)
    .await
}

/// Per kind, workers that heartbeated within `within`.
pub async fn workers_alive(pool: &PgPool, within: Duration) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT kind, count(*) FILTER (WHERE w.last_seen > now() - make_interval(secs => $1))::float8
         FROM queue_workers w, unnest(w.kinds) AS kind GROUP BY 1",
    )
    .bind(within.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Per kind, workers holding at least one claimed job.
pub async fn workers_busy(pool: &PgPool) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT $1::text, count(DISTINCT locked_by)::float8 FROM deliveries
         WHERE status = 'sending' HAVING count(*) > 0
         UNION ALL
         SELECT kind, count(DISTINCT locked_by)::float8 FROM jobs
         WHERE status = 'queued' AND lease_until > now() GROUP BY 1
         UNION ALL
         SELECT $2::text, count(DISTINCT locked_by)::float8 FROM webhook_events
         WHERE processed_at IS NULL AND failed_at IS NULL AND lease_until > now()
         HAVING count(*) > 0",
    )
    .bind(sends::KIND)
    .bind(events::KIND)
    .fetch_all(pool)
    .await
}
