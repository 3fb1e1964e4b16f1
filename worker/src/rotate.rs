//! The rotate job: one step of a key rotation (see `moonengage_privacy::rotation`). A step
//! re-seals a bounded number of batches, then queues the next step where it stopped, so a
//! rotation of millions of rows never holds a job (or a shutdown) for long. When a sweep of every
//! sealed column is done and no value under an older key is left — checked again once every
//! process has had time to seal with the new key — the older keys are retired and removed.

use std::time::Duration;

use anyhow::Context as _;
use moonengage_privacy::catalog;
use moonengage_privacy::rotation;
use moonengage_privacy::rotation::RotateJob;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

/// Batches of `rotation::BATCH_ROWS` per step: about 20,000 rows, a few seconds of work.
const BATCHES_PER_STEP: usize = 20;

impl Run<Env> for RotateJob {
    /// Steps follow one another; one at a time per process.
    const CONCURRENCY: Option<usize> = Some(1);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        Ok(step(env, self).await?)
    }
}

async fn step(ctx: &Env, job: RotateJob) -> anyhow::Result<()> {
    ctx.keyring
        .refresh()
        .await
        .context("re-reading data keys")?;
    let current = ctx.keyring.current_key_id();
    if current > job.key_id {
        tracing::info!(key_id = job.key_id, current, "a newer rotation took over");
        return Ok(());
    }
    if current < job.key_id {
        // The new key is not active yet: wait, and keep the position.
        return next(
            ctx,
            job,
            job.column,
            job.after_id,
            ctx.settings.crypto.refresh_interval(),
        )
        .await;
    }

    let (mut column, mut after_id) = (job.column, job.after_id);
    let mut resealed = 0;
    let sealed_columns = catalog::sealed_columns();
    for _ in 0..BATCHES_PER_STEP {
        let Some(sealed) = sealed_columns.get(column) else {
            break;
        };
        let batch = rotation::reseal_batch(&ctx.pool, &ctx.keyring, sealed, after_id).await?;
        resealed += batch.resealed;
        match batch.next_after {
            Some(id) => after_id = id,
            None => (column, after_id) = (column + 1, 0),
        }
    }
    tracing::info!(
        key_id = current,
        step = job.step,
        resealed,
        "rotate step done"
    );
    if column < sealed_columns.len() {
        return next(ctx, job, column, after_id, Duration::ZERO).await;
    }

    let left = rotation::stale_values(&ctx.pool, current).await?;
    if left > 0 {
        tracing::info!(
            key_id = current,
            left,
            "values under older keys remain; sweeping again"
        );
        return next(ctx, job, 0, 0, Duration::ZERO).await;
    }
    let age = rotation::key_age(&ctx.pool, current)
        .await?
        .context("the current data key is gone")?;
    let settle = ctx.settings.crypto.settle_delay();
    if age < settle {
        // A process may not have switched to the new key yet: look again once all have.
        return next(ctx, job, 0, 0, settle - age).await;
    }
    let retired = rotation::retire_older(&ctx.pool, current).await?;
    let removed = rotation::remove_unused(&ctx.pool).await?;
    tracing::info!(
        key_id = current,
        ?retired,
        ?removed,
        "key rotation complete"
    );
    Ok(())
}

/// Queues the step after `job`, resuming at `column` after row `after_id`.
async fn next(
    ctx: &Env,
    job: RotateJob,
    column: usize,
    after_id: i64,
    delay: Duration,
) -> anyhow::Result<()> {
    let next = RotateJob {
        key_id: job.key_id,
        step: job.step + 1,
        column,
        after_id,
    };
    let mut conn = ctx.pool.acquire().await.context("queuing a rotate step")?;
    rotation::queue_step(&mut conn, &next, delay, ctx.settings.queue.max_attempts).await
}
