//! The Postgres pool shared by the queue and the application, and the schema migrations.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::SqlSafeStr;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgTransactionManager};
use sqlx::{Connection, PgPool};
use sqlx_core::transaction::TransactionManager;

use crate::settings::DatabaseSettings;

/// Opens the pool lazily so a process starts (and reports its own errors) even while Postgres is
/// still coming up; the first query waits up to `acquire_timeout_secs`.
///
/// With `database.transaction_pooler`, every checkout of a connection is one transaction,
/// begun when it is handed out and committed when it comes back: the pooler keeps the client on
/// one server for that long, so sqlx's prepare and execute round trips meet the same server.
/// A `pool.begin()` inside it is a savepoint (sqlx counts the checkout's transaction). The
/// checkout's first statement drops the prepared statements earlier clients left on that
/// server, and the pool caches none, so no name ever collides.
pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let mut options: PgConnectOptions = settings
        .url
        .expose_secret()
        .parse()
        .context("invalid database.url")?;
    let mut pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs));
    if settings.transaction_pooler {
        options = options.statement_cache_capacity(0);
        pool = pool
            // sqlx closes a connection past its lifetime as it comes back, before
            // `after_release`: that would roll the checkout back. The pooler recycles servers.
            .max_lifetime(None)
            .after_connect(|conn, _| Box::pin(async move { begin_checkout(conn).await }))
            .before_acquire(|conn, _| {
                Box::pin(async move { begin_checkout(conn).await.map(|()| true) })
            })
            .after_release(|conn, _| {
                Box::pin(async move {
                    // A connection that cannot end its checkout is closed, not reused.
                    while PgTransactionManager::get_transaction_depth(conn) > 0 {
                        if PgTransactionManager::commit(conn).await.is_err() {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })
            });
    }
    Ok(pool.connect_lazy_with(options))
}

/// Opens a checkout's transaction on whichever server the pooler gives, clearing that server's
/// prepared statements (one simple query: one round trip, one server).
async fn begin_checkout(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    PgTransactionManager::begin(conn, Some("BEGIN; DEALLOCATE ALL".into_sql_str())).await
}

/// A pool for connections that need a session of their own (`database.session_url`): the
/// workers' `LISTEN`, which takes its own connection from the pool's options.
pub fn connect_session(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .connect_lazy(settings.session_url().expose_secret())
        .context("invalid database.session_url")
}

/// Applies the application's migrations (the queue's tables are among them).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    bootstrap_legacy_queue(pool).await?;
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("applying the application's migrations")?;
    Ok(())
}

/// The first migrations were written when apalis-postgres owned the queue, and one indexes its
/// table. A database that never had it gets an empty stand-in of that table, which the
/// migration that moves the queue into our own tables then drops with apalis's schema; a
/// database migrated past that point is left alone.
async fn bootstrap_legacy_queue(pool: &PgPool) -> anyhow::Result<()> {
    const INDEXES_APALIS: i64 = 20261129000200;
    let history: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await
            .context("reading the migration history")?;
    if history {
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM public._sqlx_migrations WHERE version = $1)",
        )
        .bind(INDEXES_APALIS)
        .fetch_one(pool)
        .await
        .context("reading the migration history")?;
        if applied {
            return Ok(());
        }
    }
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS apalis;
         CREATE TABLE IF NOT EXISTS apalis.jobs (
             id text, job_type text, job bytea, status text, attempts integer,
             max_attempts integer, run_at timestamptz, priority integer, idempotency_key text);",
    )
    .execute(pool)
    .await
    .context("preparing the legacy queue schema")?;
    Ok(())
}

/// Creates (dropping first, if it exists) a database on the server of `url` and returns the
/// URL that points at it. The demo and the tests use it to start from a clean database; `name`
/// is limited to lowercase letters, digits and `_` because it cannot be a bind parameter.
pub async fn recreate_database(url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name `{name}` must be lowercase letters, digits and _"
    );
    let (server, _) = url
        .rsplit_once('/')
        .context("database.url has no database name")?;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("connecting to Postgres (is it running?)")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .with_context(|| format!("re-creating database {name}"))?;
    }
    Ok(format!("{server}/{name}"))
}
