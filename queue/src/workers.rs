//! Live worker processes. Each registers under a name unique among live processes and
//! heartbeats; the heartbeat also renews the lease of every row the worker holds, so a lease
//! expires only when its worker stopped heartbeating (dead, or cut off from the database).

use std::time::Duration;

use sqlx::PgPool;

use crate::reconnect;

/// Registers `name` as live for `kinds`, then heartbeats every `every` until the task is
/// dropped, renewing the leases of the sends it holds by `lease` each time (other jobs have a
/// fixed lease, `jobs::LEASE`). Rows locked right now are being
/// settled and skipped, so a renewal never waits for (or deadlocks with) an outcome flush.
pub async fn heartbeat(
    pool: PgPool,
    name: String,
    kinds: Vec<String>,
    every: Duration,
    lease: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        reconnect::report(beat(&pool, &name, &kinds, lease).await, "worker heartbeat");
    }
}

async fn beat(pool: &PgPool, name: &str, kinds: &[String], lease: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "WITH me AS (
             INSERT INTO queue_workers (name, kinds) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET last_seen = now(), kinds = EXCLUDED.kinds
         )
         UPDATE deliveries d SET lease_until = now() + make_interval(secs => $3)
         FROM (SELECT campaign_id, subscriber_id FROM deliveries
               WHERE status = 'sending' AND locked_by = $1
               FOR UPDATE SKIP LOCKED) mine
         WHERE d.campaign_id = mine.campaign_id AND d.subscriber_id = mine.subscriber_id",
    )
    .bind(name)
    .bind(kinds)
    .bind(lease.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// SQL: whether the row aliased `row` is held: its lease is live and its worker has not fallen
/// silent (no heartbeat for `$silent` seconds, the bind parameter named). A claim takes back a
/// row whose holder fell silent without waiting for its lease to run out, so a SIGKILLed
/// worker's jobs and webhook events run again within a heartbeat lease, not minutes later. A
/// holder with no registry row (not registered yet) counts as live: only its lease frees it.
pub(crate) fn held_by_live_worker(row: &str, silent: &str) -> String {
    format!(
        "({row}.lease_until IS NOT NULL AND {row}.lease_until > now() AND NOT EXISTS (
             SELECT 1 FROM queue_workers holder
             WHERE holder.name = {row}.locked_by
               AND holder.last_seen < now() - make_interval(secs => {silent})))"
    )
}

/// Removes a worker that stopped cleanly (what it held was finished or given back).
pub async fn deregister(pool: &PgPool, name: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM queue_workers WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Workers of `kind` that heartbeated within `within`: with Redis down, each sends at a Page's
/// rate divided by this.
pub async fn live(pool: &PgPool, kind: &str, within: Duration) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM queue_workers
         WHERE $1 = ANY(kinds) AND last_seen > now() - make_interval(secs => $2)",
    )
    .bind(kind)
    .bind(within.as_secs_f64())
    .fetch_one(pool)
    .await
}

/// Retention's statement for the registry: deletes at most `$2` workers silent for more than
/// `$1` seconds (stopped without deregistering: killed, or their machine gone). Their leases
/// expired long before.
pub const PRUNE_DEAD: &str = "DELETE FROM queue_workers WHERE name IN (
     SELECT name FROM queue_workers
     WHERE last_seen < now() - make_interval(secs => $1)
     LIMIT $2)";
