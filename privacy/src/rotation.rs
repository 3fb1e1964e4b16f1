//! Key rotation: re-sealing the values of every sealed column of the catalog
//! ([`catalog::sealed_columns`]) under the current data key in batches, and retiring, then
//! removing, the data keys no value uses any more.
//!
//! A rotation adds a data key ([`begin`]); once it is active (see
//! [`CryptoSettings::activation_delay`]) every process seals under it, and the rotate job moves
//! the existing values over with [`reseal_batch`], step after step, until [`stale_values`] finds
//! none. Reads never notice: a keyring opens values under any key it holds. Blind indexes are
//! keyed by the separate pepper (`crypto.blind_index_key`) and are not rotated by this.

use std::time::Duration;

use anyhow::Context as _;
use secrecy::zeroize::Zeroizing;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::catalog::{self, SealedColumn};
use crate::crypto::{self, CryptoSettings, Keyring};
use moonengage_queue::{Job, jobs};
use serde::{Deserialize, Serialize};

/// One step of a key rotation: re-seal, in batches, what is still sealed under an older data key,
/// resuming at a position; the step queues the next one until nothing is left. Ids only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateJob {
    /// The data key everything is re-sealed under.
    pub key_id: i32,
    /// Steps before this one: with the key id, the unique key, so each step is queued once.
    pub step: u32,
    /// Index into [`catalog::sealed_columns`] where this step resumes.
    pub column: usize,
    /// The last row id already handled in that column.
    pub after_id: i64,
}

impl RotateJob {
    /// The first step of a rotation to `key_id`.
    pub fn start(key_id: i32) -> RotateJob {
        RotateJob {
            key_id,
            step: 0,
            column: 0,
            after_id: 0,
        }
    }
}

impl Job for RotateJob {
    const KIND: &'static str = "rotate";

    fn key(&self) -> String {
        format!("{}:{}", self.key_id, self.step)
    }
}

/// Rows re-sealed per statement: each batch is one short transaction, so rows are never locked
/// for long and sends keep going.
pub const BATCH_ROWS: i64 = 1_000;

/// SQL that is true when `sealed` holds a value sealed under a key other than the one in
/// parameter `param`: bytes 2 to 5 of a sealed value are its key id, big-endian, which is how
/// `int4send` writes an integer.
fn under_other_key(sealed: &SealedColumn, param: &str) -> String {
    format!(
        "substring({} FROM 2 FOR 4) <> int4send({param}::int4)",
        sealed.column
    )
}

/// Starts a rotation: adds a data key wrapped to the configured age recipients and queues the
/// rotate job's first step for when the key becomes active, in one transaction. Returns the new
/// key's id.
pub async fn begin(
    pool: &PgPool,
    settings: &CryptoSettings,
    max_attempts: i32,
) -> anyhow::Result<i32> {
    let mut tx = pool.begin().await.context("starting a key rotation")?;
    let key_id = crypto::add_data_key(&mut tx, settings)
        .await
        .context("adding a data key")?;
    queue_step(
        &mut tx,
        &RotateJob::start(key_id),
        settings.activation_delay(),
        max_attempts,
    )
    .await?;
    tx.commit().await.context("starting a key rotation")?;
    Ok(key_id)
}

/// Queues a step of the rotate job to run after `delay`.
pub async fn queue_step(
    conn: &mut PgConnection,
    job: &RotateJob,
    delay: Duration,
    max_attempts: i32,
) -> anyhow::Result<()> {
    jobs::enqueue_after(&mut *conn, job, delay, max_attempts).await?;
    Ok(())
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Values now sealed under the current key.
    pub resealed: u64,
    /// Where the next batch of this column starts; `None` when the column is done.
    pub next_after: Option<i64>,
}

/// Re-seals under the keyring's current key up to [`BATCH_ROWS`] values of `sealed` that are
/// under another key, in rows after `after_id`. Each row is written only if it still holds the
/// value that was read (compare-and-set), so a concurrent write is never overwritten; a value
/// written meanwhile under an old key is found by a later sweep.
pub async fn reseal_batch(
    pool: &PgPool,
    keyring: &Keyring,
    sealed: &SealedColumn,
    after_id: i64,
) -> anyhow::Result<Batch> {
    let SealedColumn {
        table,
        column,
        field,
    } = *sealed;
    let current = keyring.current_key_id();
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, {column} FROM {table} WHERE id > $1 AND {} ORDER BY id LIMIT $3",
        under_other_key(sealed, "$2")
    )))
    .bind(after_id)
    .bind(current)
    .bind(BATCH_ROWS)
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading {table}.{column} to re-seal"))?;
    let next_after = match rows.last() {
        Some((id, _)) if rows.len() as i64 == BATCH_ROWS => Some(*id),
        _ => None,
    };
    if rows.is_empty() {
        return Ok(Batch {
            resealed: 0,
            next_after,
        });
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut olds = Vec::with_capacity(rows.len());
    let mut news = Vec::with_capacity(rows.len());
    for (id, old) in rows {
        let plain = Zeroizing::new(
            keyring
                .open(field, &old)
                .with_context(|| format!("opening {table}.{column} of row {id}"))?,
        );
        news.push(keyring.seal(field, &plain));
        ids.push(id);
        olds.push(old);
    }
    let updated = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {table} t SET {column} = v.new
         FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS v(id, old, new)
         WHERE t.id = v.id AND t.{column} = v.old"
    )))
    .bind(&ids)
    .bind(&olds)
    .bind(&news)
    .execute(pool)
    .await
    .with_context(|| format!("re-sealing {table}.{column}"))?;
    Ok(Batch {
        resealed: updated.rows_affected(),
        next_after,
    })
}

/// How many values, in every sealed column, are under a key other than `current`.
pub async fn stale_values(pool: &PgPool, current: i32) -> anyhow::Result<i64> {
    let counts: Vec<String> = catalog::sealed_columns()
        .iter()
        .map(|sealed| {
            format!(
                "(SELECT count(*) FROM {} WHERE {})",
                sealed.table,
                under_other_key(sealed, "$1")
            )
        })
        .collect();
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT {}", counts.join(" + "))))
        .bind(current)
        .fetch_one(pool)
        .await
        .context("counting values under older keys")
}

/// How long ago data key `key_id` was created; `None` when it does not exist.
pub async fn key_age(pool: &PgPool, key_id: i32) -> anyhow::Result<Option<Duration>> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - created_at)::float8 FROM data_keys WHERE id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await
    .context("reading a data key's age")?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Retires every data key older than `current`: it no longer seals anywhere, and only opens
/// what may still be under it until it is removed. Returns the ids retired.
pub async fn retire_older(pool: &PgPool, current: i32) -> anyhow::Result<Vec<i32>> {
    sqlx::query_scalar(
        "UPDATE data_keys SET retired_at = now()
         WHERE id < $1 AND retired_at IS NULL RETURNING id",
    )
    .bind(current)
    .fetch_all(pool)
    .await
    .context("retiring older data keys")
}

/// Deletes every retired data key that no sealed value uses, so the database no longer holds
/// it (backups taken before keep their own copy). Returns the ids removed.
pub async fn remove_unused(pool: &PgPool) -> anyhow::Result<Vec<i32>> {
    let unused: Vec<String> = catalog::sealed_columns()
        .iter()
        .map(|sealed| {
            format!(
                "NOT EXISTS (SELECT 1 FROM {} WHERE substring({} FROM 2 FOR 4) = int4send(k.id))",
                sealed.table, sealed.column
            )
        })
        .collect();
    sqlx::query_scalar(AssertSqlSafe(format!(
        "DELETE FROM data_keys k WHERE k.retired_at IS NOT NULL AND {} RETURNING k.id",
        unused.join(" AND ")
    )))
    .fetch_all(pool)
    .await
    .context("removing unused data keys")
}
