//! Maintenance owned by the leader: apalis-postgres never prunes finished rows on its own.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

/// Rows deleted per statement, so pruning never holds long locks.
const PRUNE_BATCH: i64 = 10_000;

/// Deletes finished job rows older than `retention`; returns how many went.
pub async fn prune_finished_jobs(pool: &PgPool, retention: Duration) -> anyhow::Result<u64> {
    let pruned = sqlx::query(
        "DELETE FROM apalis.jobs WHERE id IN (
             SELECT id FROM apalis.jobs
             WHERE status IN ('Done', 'Killed') AND done_at < now() - make_interval(secs => $1)
             LIMIT $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(PRUNE_BATCH)
    .execute(pool)
    .await
    .context("pruning finished jobs")?;
    Ok(pruned.rows_affected())
}
